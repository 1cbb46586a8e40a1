"""Runs the paper's training recipe (Sec. 5.1) as a resumable ``fit`` on any backend.

Defaults are the paper's (:class:`~keras_hiri.recipe.Recipe`): AdamW, learning
rate 1e-3 at batch 1024 scaled linearly with the batch size, weight decay 0.05
(not on norms and biases), cosine decay with 5 linear warm-up epochs, 300
epochs, EMA distillation on. Plain training is the same trainer with
``alpha=1`` (targets are the mixed labels only). Every run writes, under
``output_dir``:

* ``backup/``: ``keras.callbacks.BackupAndRestore`` state; re-running the same
  command after a crash resumes from the last finished epoch;
* ``checkpoints/epoch_XXX.weights.h5``: the trainer's weights after each epoch;
* ``logs/``: TensorBoard logs (when TensorBoard is installed);
  ``history.csv``: one row of metrics per epoch;
* ``final.keras`` (the student) and, with distillation, ``teacher.keras`` (the
  paper's practice is to keep the EMA teacher as the final model).

In-memory arrays go through :class:`~keras_hiri.pipeline.KeyedImageDataset`
(no TensorFlow needed), where the order, crop, flip, RandAugment and Random
Erasing of every batch are keyed by ``(seed, epoch, batch)``; the trainer keys
drop-path and CutMix/MixUp by its checkpointed step counter. So with the
default augmentation and drop-path a resumed run repeats the uninterrupted one
exactly. Streaming sources (a directory, tfds) use the ``tf.data`` pipeline of
:mod:`keras_hiri.augmentation` (TensorFlow needed); they resume the model,
teacher, optimizer and epoch, but not the data order.
"""

import argparse
import contextlib
import dataclasses
import json
import os

import keras
import numpy as np

from keras_hiri import extras
from keras_hiri.builder import HiriViT
from keras_hiri.distillation import EMADistillation
from keras_hiri.pipeline import EpochCounter, KeyedImageDataset
from keras_hiri.recipe import Recipe


def build_trainer(variant, image_size, num_classes, recipe, steps_per_epoch, metrics=("accuracy",)):
    """The student and its trainer, compiled with the recipe's optimizer.

    The trainer is :class:`~keras_hiri.EMADistillation`; with
    ``recipe.distillation=False`` its ``alpha`` is 1 (plain CutMix/MixUp
    training, the teacher only tracked).
    """
    keras.utils.set_random_seed(recipe.seed)
    student = HiriViT(
        variant, input_shape=(*image_size, 3), classes=num_classes,
        drop_path_rate=recipe.drop_path_rate,
    )
    model = EMADistillation(
        student, alpha=recipe.alpha if recipe.distillation else 1.0,
        ema_momentum=recipe.ema_momentum, mixup_alpha=recipe.mixup_alpha,
        cutmix_alpha=recipe.cutmix_alpha, label_smoothing=recipe.label_smoothing,
        seed=recipe.seed,
    )
    model.compile(optimizer=recipe.optimizer(steps_per_epoch), metrics=list(metrics))
    return model, student


def _is_tf_dataset(data):
    return type(data).__module__.startswith("tensorflow") and hasattr(data, "element_spec")


def train(
    variant,
    train_data,
    val_data,
    image_size,
    output_dir,
    recipe=None,
    num_classes=None,
    steps_per_epoch=None,
    verbose=1,
    extra_callbacks=(),
):
    """Runs (or resumes) the recipe.

    Args:
        train_data: ``(uint8 images, int labels)`` arrays (keyed, exactly
            resumable, no TensorFlow needed) or an unbatched ``tf.data.Dataset``
            of ``(image, label)`` (then give ``num_classes`` and
            ``steps_per_epoch``).
        val_data: the same kind, or ``None``.

    Returns:
        The ``keras.callbacks.History`` and the trained model (the trainer).
    """
    recipe = recipe or Recipe()
    os.makedirs(output_dir, exist_ok=True)
    with open(os.path.join(output_dir, "recipe.json"), "w") as f:
        json.dump({"variant": str(variant), "image_size": list(image_size),
                   **dataclasses.asdict(recipe)}, f, indent=1)
    keyed = []
    if _is_tf_dataset(train_data):
        from keras_hiri import augmentation

        if not num_classes or steps_per_epoch is None:
            raise ValueError("A tf.data training set needs num_classes and steps_per_epoch.")
        train_ds = augmentation.train_pipeline(
            train_data, image_size, recipe.batch_size, num_classes, mix=False,
            randaugment=recipe.randaugment, erasing_prob=recipe.erasing_prob, seed=recipe.seed,
        ).repeat()
        fit_steps = steps_per_epoch
        val_ds = None
        if val_data is not None:
            val_ds = augmentation.eval_pipeline(val_data, image_size, recipe.batch_size)
    else:
        images, labels = train_data
        num_classes = num_classes or int(np.max(labels)) + 1
        steps_per_epoch = len(labels) // recipe.batch_size
        if steps_per_epoch < 1:
            raise ValueError(
                f"batch_size={recipe.batch_size} is larger than the training set ({len(labels)})."
            )
        train_ds = KeyedImageDataset(
            images, labels, image_size, recipe.batch_size, randaugment=recipe.randaugment,
            erasing_prob=recipe.erasing_prob, seed=recipe.seed,
        )
        keyed.append(train_ds)
        fit_steps = None
        val_ds = None
        if val_data is not None:
            val_ds = KeyedImageDataset(*val_data, image_size, recipe.batch_size, train=False)
    model, student = build_trainer(variant, image_size, num_classes, recipe, steps_per_epoch)

    callbacks = [
        EpochCounter(*keyed),
        keras.callbacks.BackupAndRestore(os.path.join(output_dir, "backup")),
        keras.callbacks.ModelCheckpoint(
            os.path.join(output_dir, "checkpoints", "epoch_{epoch:03d}.weights.h5"),
            save_weights_only=True,
        ),
        keras.callbacks.CSVLogger(os.path.join(output_dir, "history.csv"), append=True),
        *extra_callbacks,
    ]
    if extras.has_tensorboard():
        callbacks.append(keras.callbacks.TensorBoard(os.path.join(output_dir, "logs")))
    os.makedirs(os.path.join(output_dir, "checkpoints"), exist_ok=True)
    history = model.fit(
        train_ds, validation_data=val_ds, epochs=recipe.epochs, callbacks=callbacks,
        steps_per_epoch=fit_steps, verbose=verbose, shuffle=False,
    )
    student.save(os.path.join(output_dir, "final.keras"))
    if recipe.distillation:
        model.teacher.save(os.path.join(output_dir, "teacher.keras"))
    return history, model


# ------------------------------------------------------------------ CLI
CLI_HELP = """    # the offline photo-patch set (real skimage photographs, see keras_hiri.data)
    python examples/train.py --photo-patches --variant tiny --image-size 64 \\
        --epochs 10 --batch-size 32 --output-dir runs/patches
    # a directory of class folders
    python examples/train.py --data-dir /data/train --val-dir /data/val --variant S \\
        --image-size 224 --batch-size 128 --output-dir runs/s224
    # ImageNet through tensorflow-datasets (tar files already in --manual-dir)
    python examples/train.py --tfds imagenet2012 --manual-dir /data/imagenet --variant S ...

Re-running the same command after a crash resumes from the last finished epoch
(keras.callbacks.BackupAndRestore in OUTPUT_DIR/backup). Defaults are the
paper's: AdamW, lr 1e-3 x batch/1024, weight decay 0.05, cosine with 5 warm-up
epochs, 300 epochs, EMA distillation on (--no-distillation for plain training).

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
    p = argparse.ArgumentParser(description="Train a HIRI-ViT with the paper's recipe (Sec. 5.1), resumable after a crash.",
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=CLI_HELP)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--photo-patches", action="store_true", help="offline skimage photo patches")
    src.add_argument("--data-dir", help="directory of class folders")
    src.add_argument("--tfds", help="tensorflow-datasets name (no download)")
    p.add_argument("--val-dir")
    p.add_argument("--tfds-data-dir")
    p.add_argument("--manual-dir")
    p.add_argument("--variant", default="S", help="S, B, L or 'tiny' (a small CPU network)")
    p.add_argument("--image-size", type=int, default=224)
    p.add_argument("--output-dir", required=True)
    p.add_argument("--steps-per-epoch", type=int, help="streaming sources only")
    p.add_argument("--data-parallel", action="store_true")
    p.add_argument("--patches-per-class", type=int, default=64)
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
    from keras_hiri import data

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
    train_ds, classes = data.tfds_dataset(args.tfds, "train", args.tfds_data_dir, args.manual_dir)
    val_ds, _ = data.tfds_dataset(args.tfds, "validation", args.tfds_data_dir, args.manual_dir)
    return train_ds, val_ds, classes


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
        )
    last = {k: round(float(v[-1]), 4) for k, v in history.history.items()}
    print("final epoch:", last)
    print("outputs in", os.path.abspath(args.output_dir))
