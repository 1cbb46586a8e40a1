"""EMA distillation vs plain training of the same small HIRI-ViT, same steps.

Data: the offline "skimage photo patches" set (keras_hiri.training.data.photo_patches):
10 classes, one per real photograph shipped with scikit-image; 64x64 train
patches from the left 75 % of each photo, validation patches from the right
25 % (no shared pixels). Both runs use the paper's recipe (AdamW, cosine with
warm-up, RandAugment, Random Erasing, CutMix/MixUp, label smoothing) with the
same seed and number of optimizer steps; the only difference is EMA
distillation (teacher = EMA of the student, alpha below) versus plain
CutMix/MixUp training.

    KERAS_BACKEND=jax python benchmarks/distillation.py [--epochs 30]

Prints validation accuracy of both students (and of the EMA teacher), and the
step-time ratio distillation / plain (median epoch time / steps, first epoch
excluded because it includes compilation).
"""

import argparse
import statistics
import tempfile
import time

import keras
import numpy as np

from keras_hiri.training import data, run as training


class EpochTimer(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.times = []

    def on_epoch_begin(self, epoch, logs=None):
        self.start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.times.append(time.perf_counter() - self.start)


def run(distillation, args, train, val):
    recipe = training.Recipe(
        epochs=args.epochs, batch_size=args.batch_size, base_learning_rate=args.lr,
        base_batch_size=args.batch_size, warmup_epochs=max(1, args.epochs // 10),
        distillation=distillation, alpha=args.alpha, ema_momentum=args.ema_momentum,
        drop_path_rate=0.0, seed=args.seed,
    )
    timer = EpochTimer()
    with tempfile.TemporaryDirectory() as out:
        _, model = training.train("tiny", train, None, (args.size, args.size), out, recipe,
                                  verbose=2, extra_callbacks=[timer])
    student = model.student  # plain training is the trainer with alpha=1
    probs = keras.ops.convert_to_numpy(student.predict(val[0].astype("float32"), verbose=0))
    result = {"student": float(np.mean(probs.argmax(-1) == val[1]))}
    if distillation:
        probs = keras.ops.convert_to_numpy(model.teacher.predict(val[0].astype("float32"), verbose=0))
        result["teacher"] = float(np.mean(probs.argmax(-1) == val[1]))
        if args.save_teacher:
            model.teacher.save_weights(args.save_teacher)
    steps = len(train[1]) // args.batch_size
    result["step_s"] = statistics.median(timer.times[1:] or timer.times) / steps
    return result


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--per-class", type=int, default=64)
    p.add_argument("--alpha", type=float, default=0.5)
    p.add_argument("--ema-momentum", type=float, default=0.99)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--save-teacher", help="write the distilled EMA teacher's weights here (.weights.h5)")
    args = p.parse_args(argv)
    train = data.photo_patches("train", patch_size=args.size, per_class=args.per_class)[:2]
    val = data.photo_patches("validation", patch_size=args.size, per_class=args.per_class // 2)[:2]
    # The evaluation transform is the identity here: patches are already model-sized.
    plain = run(False, args, train, val)
    distilled = run(True, args, train, val)
    steps = args.epochs * (len(train[1]) // args.batch_size)
    print(f"\nbackend {keras.backend.backend()}, {steps} optimizer steps each, "
          f"{len(train[1])} train / {len(val[1])} val patches, 10 classes (chance 10 %)")
    print("| run | val top-1 | step time (s) |\n|---|---|---|")
    print(f"| plain CutMix/MixUp | {plain['student']:.3f} | {plain['step_s']:.3f} |")
    print(f"| EMA distillation (student) | {distilled['student']:.3f} | {distilled['step_s']:.3f} |")
    print(f"| EMA distillation (teacher) | {distilled['teacher']:.3f} | - |")
    print(f"step-time ratio distillation / plain: {distilled['step_s'] / plain['step_s']:.2f} "
          f"(target <= 1.4)")


if __name__ == "__main__":
    main()
