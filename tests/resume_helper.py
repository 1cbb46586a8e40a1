"""Runs a tiny training with the default augmentation and drop-path; optionally
SIGKILLs itself mid-epoch.

    python -m tests.resume_helper OUTPUT_DIR [--kill-epoch E --kill-batch B]
"""

import argparse
import os
import signal

import keras

from keras_hiri.training import data, run as training
from tests.helpers import turn_off_grappler
from tests.tiny import TINY


# The recipe's defaults (drop-path 0.1, RandAugment, Random Erasing, CutMix/MixUp,
# EMA distillation), only shortened and with a faster-moving teacher.
RECIPE = training.Recipe(epochs=2, batch_size=16, warmup_epochs=1, ema_momentum=0.9, seed=7)


class KillAt(keras.callbacks.Callback):
    def __init__(self, epoch, batch):
        super().__init__()
        self.epoch, self.batch, self.current = epoch, batch, -1

    def on_epoch_begin(self, epoch, logs=None):
        self.current = epoch

    def on_train_batch_end(self, batch, logs=None):
        if self.current == self.epoch and batch == self.batch:
            os.kill(os.getpid(), signal.SIGKILL)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("output_dir")
    p.add_argument("--kill-epoch", type=int)
    p.add_argument("--kill-batch", type=int, default=1)
    args = p.parse_args()
    turn_off_grappler()  # as the test process does (each of the three runs: 53 -> 41 s)
    x, y, _ = data.photo_patches("train", patch_size=64, per_class=4)
    xv, yv, _ = data.photo_patches("validation", patch_size=64, per_class=2)
    extra = [KillAt(args.kill_epoch, args.kill_batch)] if args.kill_epoch is not None else []
    training.train(TINY, (x, y), (xv, yv), (64, 64), args.output_dir, RECIPE,
                   verbose=0, extra_callbacks=extra)


if __name__ == "__main__":
    main()
