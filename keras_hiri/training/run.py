"""Runs the paper's training recipe (Sec. 5.1) as a resumable ``fit`` on any backend.

Defaults are the paper's (:class:`~keras_hiri.training.recipe.Recipe`): AdamW, learning
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

In-memory arrays go through :class:`~keras_hiri.training.pipeline.KeyedImageDataset`
(no TensorFlow needed), where the order, crop, flip, RandAugment and Random
Erasing of every batch are keyed by ``(seed, epoch, batch)``; the trainer keys
drop-path and CutMix/MixUp by its checkpointed step counter. So with the
default augmentation and drop-path a resumed run repeats the uninterrupted one
exactly. Streaming sources (a directory, tfds) use the ``tf.data`` pipeline of
:mod:`keras_hiri.training.augmentation` (TensorFlow needed); they resume the model,
teacher, optimizer and epoch, but not the data order.
"""

import dataclasses
import json
import os

import keras
import numpy as np

from keras_hiri import extras
from keras_hiri.builder import HiriViT
from keras_hiri.training.distillation import EMADistillation
from keras_hiri.training.pipeline import EpochCounter, KeyedImageDataset
from keras_hiri.training.recipe import Recipe


def build_trainer(variant, image_size, num_classes, recipe, steps_per_epoch, metrics=("accuracy",),
                  init_weights=None):
    """The student and its trainer, compiled with the recipe's optimizer.

    The trainer is :class:`~keras_hiri.EMADistillation`; with
    ``recipe.distillation=False`` its ``alpha`` is 1 (plain CutMix/MixUp
    training, the teacher only tracked). ``init_weights`` (a registry name or
    a weights file) starts the student from a checkpoint at any resolution;
    a classifier of another width starts anew (fine-tuning to a new task).
    """
    keras.utils.set_random_seed(recipe.seed)
    student = HiriViT(
        variant, input_shape=(*image_size, 3), classes=num_classes,
        drop_path_rate=recipe.drop_path_rate, weights=init_weights, reset_head=init_weights is not None,
    )
    model = EMADistillation(
        student, alpha=recipe.alpha if recipe.distillation else 1.0,
        ema_momentum=recipe.ema_momentum, mixup_alpha=recipe.mixup_alpha,
        cutmix_alpha=recipe.cutmix_alpha, label_smoothing=recipe.label_smoothing,
        seed=recipe.seed,
    )
    model.compile(optimizer=recipe.optimizer(steps_per_epoch, student), metrics=list(metrics))
    return model, student


def _is_tf_dataset(data):
    return type(data).__module__.startswith("tensorflow") and hasattr(data, "element_spec")


def _inputs(train_data, val_data, image_size, recipe, num_classes, steps_per_epoch, augmentations):
    """The training and validation inputs of :func:`train`: keyed
    ``KeyedImageDataset`` batches from arrays, or ``tf.data`` pipelines from a
    dataset. Returns them, the class count, the steps per epoch, and
    ``fit``'s ``steps_per_epoch`` (``None`` for arrays: the dataset's length)."""
    if _is_tf_dataset(train_data):
        from keras_hiri.training import augmentation

        if not num_classes or steps_per_epoch is None:
            raise ValueError("A tf.data training set needs num_classes and steps_per_epoch.")
        train_ds = augmentation.train_pipeline(
            train_data, image_size, recipe.batch_size,
            randaugment=recipe.randaugment, erasing_prob=recipe.erasing_prob, seed=recipe.seed,
            augmentations=augmentations,
        ).repeat()
        val_ds = None
        if val_data is not None:
            val_ds = augmentation.eval_pipeline(val_data, image_size, recipe.batch_size)
        return train_ds, val_ds, num_classes, steps_per_epoch, steps_per_epoch
    images, labels = train_data
    num_classes = num_classes or int(np.max(labels)) + 1
    steps_per_epoch = len(labels) // recipe.batch_size
    if steps_per_epoch < 1:
        raise ValueError(
            f"batch_size={recipe.batch_size} is larger than the training set ({len(labels)})."
        )
    train_ds = KeyedImageDataset(
        images, labels, image_size, recipe.batch_size, randaugment=recipe.randaugment,
        erasing_prob=recipe.erasing_prob, seed=recipe.seed, augmentations=augmentations,
    )
    val_ds = None
    if val_data is not None:
        val_ds = KeyedImageDataset(*val_data, image_size, recipe.batch_size, train=False)
    return train_ds, val_ds, num_classes, steps_per_epoch, None


def _callbacks(output_dir, train_ds, extra_callbacks):
    """The run's callbacks: the epoch counter of keyed batches, backup for
    resuming, a checkpoint per epoch, the CSV log, TensorBoard where installed."""
    callbacks = [
        EpochCounter(*[train_ds] if isinstance(train_ds, KeyedImageDataset) else []),
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
    return callbacks


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
    augmentations=(),
    init_weights=None,
):
    """Runs (or resumes) the recipe.

    Args:
        train_data: ``(uint8 images, int labels)`` arrays (keyed, exactly
            resumable, no TensorFlow needed) or an unbatched ``tf.data.Dataset``
            of ``(image, label)`` (then give ``num_classes`` and
            ``steps_per_epoch``).
        val_data: the same kind, or ``None``.
        augmentations: extra image-augmentation layers after the recipe's
            (see :class:`~keras_hiri.KeyedImageDataset` for arrays: Keras core
            layers, keyed; :func:`keras_hiri.training.augmentation.train_pipeline` for
            a ``tf.data`` set: Keras core or keras-cv layers).
        init_weights: fine-tuning: a registry name or weights file the
            student starts from (any resolution; a classifier of another
            width starts anew). Pair it with ``recipe.layer_decay``.

    Returns:
        The ``keras.callbacks.History`` and the trained model (the trainer).
    """
    recipe = recipe or Recipe()
    os.makedirs(output_dir, exist_ok=True)
    with open(os.path.join(output_dir, "recipe.json"), "w") as f:
        json.dump({"variant": str(variant), "image_size": list(image_size),
                   **dataclasses.asdict(recipe)}, f, indent=1)
    train_ds, val_ds, num_classes, steps_per_epoch, fit_steps = _inputs(
        train_data, val_data, image_size, recipe, num_classes, steps_per_epoch, augmentations)
    model, student = build_trainer(variant, image_size, num_classes, recipe, steps_per_epoch,
                                   init_weights=init_weights)

    callbacks = _callbacks(output_dir, train_ds, extra_callbacks)
    history = model.fit(
        train_ds, validation_data=val_ds, epochs=recipe.epochs, callbacks=callbacks,
        steps_per_epoch=fit_steps, verbose=verbose, shuffle=False,
    )
    student.save(os.path.join(output_dir, "final.keras"))
    if recipe.distillation:
        model.teacher.save(os.path.join(output_dir, "teacher.keras"))
    return history, model
