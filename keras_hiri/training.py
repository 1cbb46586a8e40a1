"""The paper's training recipe (Sec. 5.1) as a resumable ``fit`` on any backend.

Defaults are the paper's: AdamW, learning rate 1e-3 at batch 1024 scaled
linearly with the batch size, weight decay 0.05 (not on norms and biases),
cosine decay with 5 linear warm-up epochs, 300 epochs, EMA distillation on.
Every run writes, under ``output_dir``:

* ``backup/``: ``keras.callbacks.BackupAndRestore`` state; re-running the same
  command after a crash resumes from the last finished epoch;
* ``checkpoints/epoch_XXX.weights.h5``: the trainer's weights after each epoch;
* ``logs/``: TensorBoard logs; ``history.csv``: one row of metrics per epoch;
* ``final.keras`` (the student) and, with distillation, ``teacher.keras`` (the
  paper's practice is to keep the EMA teacher as the final model).

Data order and the crop / flip draws are a pure function of ``(seed, epoch,
sample)`` (stateless ops keyed by an epoch counter), and the distillation
mixing is keyed by its step counter, which the backup saves. So with
``randaugment=False`` and ``erasing_prob=0`` a resumed run repeats the
uninterrupted one exactly; Keras' RandAugment / RandomErasing layers keep
their random state in seed generators that no checkpoint stores, so with them
on a resumed run is statistically, not bitwise, the same.
"""

import argparse
import contextlib
import dataclasses
import json
import os

import keras
import numpy as np
import tensorflow as tf

from keras_hiri import augmentation
from keras_hiri import data
from keras_hiri.builder import HiriViT
from keras_hiri.distillation import EMADistillation


@dataclasses.dataclass
class Recipe:
    """Training hyper-parameters; the defaults are the paper's (Sec. 5.1)."""

    epochs: int = 300
    batch_size: int = 1024
    base_learning_rate: float = 1e-3
    base_batch_size: int = 1024
    weight_decay: float = 0.05
    warmup_epochs: int = 5
    min_learning_rate: float = 1e-5
    distillation: bool = True
    alpha: float = 0.5
    ema_momentum: float = 0.9999
    mixup_alpha: float = 0.8
    cutmix_alpha: float = 1.0
    label_smoothing: float = 0.1
    drop_path_rate: float = 0.1
    randaugment: bool = True
    erasing_prob: float = 0.25
    seed: int = 0

    @property
    def learning_rate(self):
        """Peak learning rate, linearly scaled: ``base * batch / base_batch``."""
        return self.base_learning_rate * self.batch_size / self.base_batch_size

    def schedule(self, steps_per_epoch):
        total = max(1, self.epochs * steps_per_epoch)
        warmup = min(self.warmup_epochs * steps_per_epoch, total - 1)
        return keras.optimizers.schedules.CosineDecay(
            initial_learning_rate=0.0,
            decay_steps=max(1, total - warmup),
            alpha=self.min_learning_rate / self.learning_rate,
            warmup_target=self.learning_rate,
            warmup_steps=warmup,
        )

    def optimizer(self, steps_per_epoch):
        opt = keras.optimizers.AdamW(
            learning_rate=self.schedule(steps_per_epoch), weight_decay=self.weight_decay
        )
        opt.exclude_from_weight_decay(var_names=["bias", "gamma", "beta"])
        return opt


class EpochCounter(keras.callbacks.Callback):
    """Publishes the current epoch to the input pipeline (a ``tf.Variable``)."""

    def __init__(self, variable):
        super().__init__()
        self.variable = variable

    def on_epoch_begin(self, epoch, logs=None):
        self.variable.assign(epoch)


def epoch_keyed_dataset(
    images, labels, image_size, batch_size, epoch, recipe, train=True, num_classes=None
):
    """Batches of ``(float image, int label)`` whose order and crop/flip draws
    depend only on ``(recipe.seed, epoch, sample index)``.

    Args:
        images, labels: in-memory arrays (``uint8 (N, H, W, 3)``, ``int (N,)``).
        epoch: an ``int64`` ``tf.Variable`` updated by :class:`EpochCounter`.
    """
    n = len(labels)
    image_size = tuple(image_size)
    images = tf.constant(images)
    labels = tf.constant(labels, tf.int64)
    seed = recipe.seed

    def order(_):
        perm = tf.random.experimental.stateless_shuffle(
            tf.range(n, dtype=tf.int64), seed=tf.stack([tf.constant(seed, tf.int64), epoch])
        )
        return tf.data.Dataset.from_tensor_slices(perm)

    def load(index):
        image = tf.gather(images, index)
        key = tf.stack([epoch * n + index, tf.constant(seed, tf.int64)])
        if not train:
            return augmentation.eval_transform(image, image_size), tf.gather(labels, index)
        crop = augmentation.random_resized_crop(image, image_size, key=key)
        flip = tf.random.stateless_uniform((), seed=key + 1) < 0.5
        crop = tf.cond(flip, lambda: tf.image.flip_left_right(crop), lambda: crop)
        return crop, tf.gather(labels, index)

    if train:
        # flat_map hides the size; state it so Keras shows steps and never
        # reports "ran out of data" at the end of an epoch.
        ds = tf.data.Dataset.from_tensors(0).flat_map(order)
        ds = ds.apply(tf.data.experimental.assert_cardinality(n))
    else:
        ds = tf.data.Dataset.range(n)
    ds = ds.map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    ds = ds.batch(batch_size, drop_remainder=train)
    if train and (recipe.randaugment or recipe.erasing_prob > 0):
        augment = augmentation.TrainAugment(
            randaugment=recipe.randaugment, erasing_prob=recipe.erasing_prob, flip=False,
            seed=seed,
        )  # the (epoch-keyed) flip is applied in load()
        ds = ds.map(lambda x, y: (augment(x), y), num_parallel_calls=tf.data.AUTOTUNE)
    if train and not recipe.distillation:
        mixer = augmentation.MixLabels(
            num_classes,
            mixup_alpha=recipe.mixup_alpha, cutmix_alpha=recipe.cutmix_alpha,
            label_smoothing=recipe.label_smoothing, seed=seed,
        )
        ds = ds.map(mixer, num_parallel_calls=tf.data.AUTOTUNE)
    return ds.prefetch(tf.data.AUTOTUNE)


def build_trainer(variant, image_size, num_classes, recipe, steps_per_epoch, metrics=("accuracy",)):
    """The student (and EMA trainer) compiled with the recipe's optimizer."""
    keras.utils.set_random_seed(recipe.seed)
    student = HiriViT(
        variant, input_shape=(*image_size, 3), classes=num_classes,
        drop_path_rate=recipe.drop_path_rate,
    )
    if recipe.distillation:
        model = EMADistillation(
            student, alpha=recipe.alpha, ema_momentum=recipe.ema_momentum,
            mixup_alpha=recipe.mixup_alpha, cutmix_alpha=recipe.cutmix_alpha,
            label_smoothing=recipe.label_smoothing, seed=recipe.seed,
        )
        model.compile(optimizer=recipe.optimizer(steps_per_epoch), metrics=list(metrics))
    else:
        model = student
        model.compile(
            optimizer=recipe.optimizer(steps_per_epoch),
            loss=keras.losses.CategoricalCrossentropy(),
            metrics=list(metrics),
        )
    return model, student


def _one_hot_eval(ds, num_classes, distillation):
    if distillation:
        return ds  # EMADistillation takes integer labels
    return ds.map(lambda x, y: (x, tf.one_hot(tf.cast(y, tf.int32), num_classes)))


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
        train_data: ``(uint8 images, int labels)`` arrays (epoch-keyed, exactly
            resumable pipeline) or an unbatched ``tf.data.Dataset`` of
            ``(image, label)`` (then give ``num_classes`` and ``steps_per_epoch``).
        val_data: the same kind, or ``None``.

    Returns:
        The ``keras.callbacks.History`` and the trained model (the trainer).
    """
    recipe = recipe or Recipe()
    os.makedirs(output_dir, exist_ok=True)
    with open(os.path.join(output_dir, "recipe.json"), "w") as f:
        json.dump({"variant": str(variant), "image_size": list(image_size),
                   **dataclasses.asdict(recipe)}, f, indent=1)
    epoch = tf.Variable(0, dtype=tf.int64, trainable=False)
    if isinstance(train_data, tf.data.Dataset):
        # Streaming data (a directory, tfds): the usual shuffle buffer. Model,
        # teacher, optimizer and epoch resume exactly; the data order does not.
        if not num_classes or steps_per_epoch is None:
            raise ValueError("A tf.data training set needs num_classes and steps_per_epoch.")
        train_ds = augmentation.train_pipeline(
            train_data, image_size, recipe.batch_size, num_classes,
            mix=not recipe.distillation, randaugment=recipe.randaugment,
            erasing_prob=recipe.erasing_prob, seed=recipe.seed,
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
        train_ds = epoch_keyed_dataset(
            images, labels, image_size, recipe.batch_size, epoch, recipe, num_classes=num_classes
        )
        fit_steps = None  # a finite dataset: Keras makes a fresh iterator each epoch
        val_ds = None
        if val_data is not None:
            val_ds = epoch_keyed_dataset(
                *val_data, image_size, recipe.batch_size, epoch, recipe, train=False
            )
    if val_ds is not None:
        val_ds = _one_hot_eval(val_ds, num_classes, recipe.distillation)
    model, student = build_trainer(variant, image_size, num_classes, recipe, steps_per_epoch)

    callbacks = [
        EpochCounter(epoch),
        keras.callbacks.BackupAndRestore(os.path.join(output_dir, "backup")),
        keras.callbacks.ModelCheckpoint(
            os.path.join(output_dir, "checkpoints", "epoch_{epoch:03d}.weights.h5"),
            save_weights_only=True,
        ),
        keras.callbacks.TensorBoard(os.path.join(output_dir, "logs")),
        keras.callbacks.CSVLogger(os.path.join(output_dir, "history.csv"), append=True),
        *extra_callbacks,
    ]
    os.makedirs(os.path.join(output_dir, "checkpoints"), exist_ok=True)
    history = model.fit(
        train_ds, validation_data=val_ds, epochs=recipe.epochs, callbacks=callbacks,
        steps_per_epoch=fit_steps, verbose=verbose,
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
        import tensorflow as tf

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
