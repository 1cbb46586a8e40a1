"""``keras-hiri train``: the paper's recipe (Sec. 5.1), resumable after a crash."""

import argparse
import contextlib
import dataclasses
import os

import keras

from keras_hiri import extras
from keras_hiri.cli import VERBS
from keras_hiri.training.recipe import Recipe
from keras_hiri.training.run import train

CLI_HELP = """    # the offline photo-patch set (real skimage photographs, see keras_hiri.training.data)
    python examples/train.py --photo-patches --variant tiny --image-size 64 \\
        --epochs 10 --batch-size 32 --output-dir runs/patches
    # a directory of class folders
    python examples/train.py --data-dir /data/train --val-dir /data/val --variant S \\
        --image-size 224 --batch-size 128 --output-dir runs/s224
    # ImageNet through tensorflow-datasets (tar files already in --manual-dir)
    python examples/train.py --tfds imagenet2012 --manual-dir /data/imagenet --variant S ...
    # an image folder through tensorflow-datasets (ROOT/train/CLASS/*.jpg, ROOT/val/...)
    python examples/train.py --tfds /data/folder --variant tiny --image-size 64 ...

Re-running the same command after a crash resumes from the last finished epoch
(keras.callbacks.BackupAndRestore in OUTPUT_DIR/backup). Defaults are the
paper's: AdamW, lr 1e-3 x batch/1024, weight decay 0.05, cosine with 5 warm-up
epochs, 300 epochs, EMA distillation on (--no-distillation for plain training).

Fine-tuning: --init-weights NAME starts from a registry checkpoint (or a weights
file) at any --image-size, with a new classifier where the class count differs;
--layer-decay 0.75 gives each block a learning rate decayed from the head down
(BEiT / timm's layer decay), e.g.
    keras-hiri train --photo-patches --variant tiny --image-size 96 \
        --init-weights tiny_skimage_patches_64 --layer-decay 0.75 --epochs 5 \
        --warmup-epochs 1 --batch-size 32 --output-dir runs/finetune96

Multi-device: on JAX, --data-parallel uses keras.distribution.DataParallel over
all devices. For several hosts run the same command on every host with
KERAS_DISTRIBUTION_JOB_ADDRESSES="host0:1234,host1:1234",
KERAS_DISTRIBUTION_NUM_PROCESSES=2 and KERAS_DISTRIBUTION_PROCESS_ID=0 / 1 set;
keras.distribution.initialize() then joins them before DataParallel. On TensorFlow, --data-parallel wraps the
build and fit in tf.distribute.MirroredStrategy (one host, all GPUs); for
several hosts use MultiWorkerMirroredStrategy with TF_CONFIG set on each host.
"""


def parse(argv=None):
    defaults = Recipe()
    p = argparse.ArgumentParser(prog="keras-hiri train", description=VERBS["train"],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=CLI_HELP)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--photo-patches", action="store_true", help="offline skimage photo patches")
    src.add_argument("--data-dir", help="directory of class folders")
    src.add_argument("--tfds", help="tensorflow-datasets name, or the root of an image folder "
                     "(ROOT/train/CLASS/*.jpg, ROOT/val/...) read by tfds; never downloads")
    p.add_argument("--val-dir")
    p.add_argument("--tfds-data-dir")
    p.add_argument("--manual-dir", help="ImageNet's ILSVRC tar files (only read)")
    p.add_argument("--variant", default="S", help="S, B, L or 'tiny' (a small CPU network)")
    p.add_argument("--image-size", type=int, default=224)
    p.add_argument("--output-dir", required=True)
    p.add_argument("--steps-per-epoch", type=int,
                   help="streaming sources only; default for --tfds: split size // batch size")
    p.add_argument("--data-parallel", action="store_true")
    p.add_argument("--patches-per-class", type=int, default=64)
    p.add_argument("--init-weights", help="fine-tune: start from this registry name or weights file "
                   "(any --image-size; a classifier of another width starts anew; see --layer-decay)")
    for field in dataclasses.fields(Recipe):
        flag = "--" + field.name.replace("_", "-")
        default = getattr(defaults, field.name)
        if isinstance(default, bool):
            p.add_argument(("--no-" if default else "--") + field.name.replace("_", "-"),
                           dest=field.name, action="store_false" if default else "store_true")
        else:
            p.add_argument(flag, type=type(default), default=default)
    return p.parse_args(argv)


def load(args):
    from keras_hiri.training import data

    size = (args.image_size, args.image_size)
    if args.photo_patches:
        x, y, names = data.photo_patches("train", patch_size=args.image_size,
                                         per_class=args.patches_per_class)
        xv, yv, _ = data.photo_patches("validation", patch_size=args.image_size,
                                       per_class=max(8, args.patches_per_class // 4))
        return (x, y), (xv, yv), len(names)
    if args.data_dir:
        train_ds, names = data.image_folder(args.data_dir, load_size=size, seed=0)
        val_ds = data.image_folder(args.val_dir, load_size=size, shuffle=False)[0] if args.val_dir else None
        return train_ds, val_ds, len(names)
    train_ds, classes, examples = data.tfds_dataset(args.tfds, "train", args.tfds_data_dir,
                                                    args.manual_dir)
    if args.steps_per_epoch is None:
        args.steps_per_epoch = max(1, examples // args.batch_size)
    val = data.tfds_dataset(args.tfds, "validation", args.tfds_data_dir, args.manual_dir,
                            missing_ok=True)
    return train_ds, val[0] if val else None, classes


def strategy_scope(enabled):
    if not enabled:
        return contextlib.nullcontext()
    backend = keras.backend.backend()
    if backend == "jax":
        if os.environ.get("KERAS_DISTRIBUTION_JOB_ADDRESSES"):
            keras.distribution.initialize()  # multi-host: reads KERAS_DISTRIBUTION_* vars
        keras.distribution.set_distribution(keras.distribution.DataParallel())
        return contextlib.nullcontext()
    if backend == "tensorflow":
        tf = extras.require_tensorflow("tf.distribute data parallelism")

        if os.environ.get("TF_CONFIG"):  # several hosts, each with TF_CONFIG set
            return tf.distribute.MultiWorkerMirroredStrategy().scope()
        return tf.distribute.MirroredStrategy().scope()
    raise ValueError("--data-parallel supports the jax and tensorflow backends.")


def main(argv=None):
    args = parse(argv)
    recipe = Recipe(**{f.name: getattr(args, f.name) for f in dataclasses.fields(Recipe)})
    variant = args.variant
    train_data, val_data, classes = load(args)
    with strategy_scope(args.data_parallel):
        history, _ = train(
            variant, train_data, val_data, (args.image_size, args.image_size), args.output_dir,
            recipe, num_classes=classes, steps_per_epoch=args.steps_per_epoch,
            init_weights=args.init_weights,
        )
    last = {k: round(float(v[-1]), 4) for k, v in history.history.items()}
    print("final epoch:", last)
    print("outputs in", os.path.abspath(args.output_dir))
