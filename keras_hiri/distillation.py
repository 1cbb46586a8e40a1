"""EMA distillation (Sec. 4.5): a ``keras.Model`` whose training step mixes the
batch, asks an EMA teacher for per-position class maps, and trains the student
on ``y_bar = alpha * y_mix + (1 - alpha) * y_hat``.

It works with plain ``compile()`` + ``fit()`` on TensorFlow, JAX and PyTorch: the
only override of the training machinery is ``compute_loss`` (and
``compute_metrics``), which every backend's ``train_step`` calls; the EMA
update is a ``Variable.assign`` inside it, which Keras carries through the
stateless JAX step and runs under ``no_grad`` on torch.

One step, for a batch ``x`` (B images) with labels ``y``:

1. ``call(x, training=True)`` first folds the student's state into the
   teacher if the previous optimizer step's result is not folded yet (its
   weights and the BatchNorm statistics of its forward pass: what the student
   holds before this step's forward pass changes them), so the teacher is the
   EMA of the student after every optimizer step. It then draws CutMix
   (probability ``switch_prob``) or MixUp, pairs sample ``i`` with sample
   ``B-1-i`` (the batch flipped, a permutation of itself), and runs the
   student on the mixed images (its draws are keyed by the step counter).
2. ``compute_loss`` counts the step and runs the
   teacher once, on the original ``x``, for class-probability maps ``P`` (its ``head_norm`` and
   ``predictions`` applied to every stage-5 token: the average pooling
   removed). ``P_mix = M * P + (1 - M) * flip(P)`` with the CutMix mask ``M``
   reduced to the stage-5 grid by area (or ``lambda`` for MixUp);
   ``y_hat = mean(P_mix)``; ``y_mix = lambda * y + (1 - lambda) * flip(y)``
   (labels smoothed first); the loss is the cross-entropy of the student's
   logits against ``y_bar``.
3. The optimizer steps the student. The state after the very last step is
   folded into the teacher when ``fit`` ends (a callback that ``fit`` adds).

``evaluate`` / ``predict`` use the student; ``trainer.teacher`` is a normal
HIRI-ViT model that can be saved or exported as the final model.
"""

import random

import keras
from keras import ops

from keras_hiri import checks, mixing, naming
from keras_hiri.layers import register
from keras_hiri.train_state import build_optimizer

# Seeds one step may draw from each generator before two steps' keys meet.
_DRAWS_PER_STEP = 16


def _zero_computed_from(tensor):
    """An int32 zero that a graph can only compute after ``tensor`` exists:
    ``min(number of NaNs in its first value, 0)``, which no graph optimizer
    folds to a constant."""
    first = ops.reshape(tensor, (-1,))[:1]
    return ops.minimum(ops.sum(ops.cast(ops.isnan(ops.cast(first, "float32")), "int32")), 0)


class _FoldLastStudentState(keras.callbacks.Callback):
    """Folds the student's final weights into the teacher when ``fit`` ends."""

    def on_train_end(self, logs=None):
        self.model.update_teacher()


@register
class EMADistillation(keras.Model):
    """Trains a HIRI-ViT student with EMA distillation (Sec. 4.5).

    Args:
        student: a model built by ``keras_hiri.HiriViT`` with ``include_top=True``.
        alpha: weight of the mixed ground-truth labels in the target (``1.0`` is
            plain CutMix/MixUp training; the paper does not give its value).
        ema_momentum: teacher momentum ``m`` in ``t <- m t + (1 - m) s``.
        mixup_alpha: Beta parameter of MixUp's ``lambda`` (0 disables MixUp).
        cutmix_alpha: Beta parameter of CutMix's ``lambda`` (0 disables CutMix).
        switch_prob: probability of CutMix when both are enabled.
        label_smoothing: smoothing of the ground-truth labels before mixing.
        seed: seed of the training-step draws (CutMix/MixUp and the student's
            drop-path). ``None`` picks one at random (Python's ``random``, so
            ``keras.utils.set_random_seed`` makes it reproducible). Each
            step's draws are keyed by ``(seed, optimizer step)``, which the
            checkpoints hold, so a resumed run draws what the uninterrupted
            one did.

    Example:
        ```python
        student = keras_hiri.HiriViTS(input_shape=(224, 224, 3), classes=100)
        trainer = keras_hiri.EMADistillation(student, alpha=0.5, ema_momentum=0.9998)
        trainer.compile(optimizer=keras.optimizers.AdamW(1e-3, weight_decay=0.05),
                        metrics=["accuracy"])
        trainer.fit(train_ds, validation_data=val_ds, epochs=300)
        trainer.teacher.save("teacher.keras")   # the paper keeps the teacher
        ```
    """

    def __init__(
        self,
        student,
        alpha=0.5,
        ema_momentum=0.9999,
        mixup_alpha=0.8,
        cutmix_alpha=1.0,
        switch_prob=0.5,
        label_smoothing=0.1,
        seed=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        _validate(student, alpha, ema_momentum, mixup_alpha, cutmix_alpha, switch_prob,
                  label_smoothing)
        self.student = student
        self.alpha = float(alpha)
        self.ema_momentum = float(ema_momentum)
        self.mixup_alpha = float(mixup_alpha)
        self.cutmix_alpha = float(cutmix_alpha)
        self.switch_prob = float(switch_prob)
        self.label_smoothing = float(label_smoothing)
        self.seed = seed
        self.num_classes = student.classifier.units
        self.image_shape = tuple(student.input.shape[1:3])
        self.student_outputs_probs = student.layers[-1].name == naming.CLASSIFIER_ACTIVATION

        self.student_logits = keras.Model(
            student.input, student.classifier.output, name="student_logits"
        )
        self.teacher = student.__class__.from_config(student.get_config())
        self.teacher.set_weights(student.get_weights())
        self.teacher.trainable = False
        self.teacher_maps = _class_maps(self.teacher)
        self.base_seed = seed if seed is not None else random.randint(0, 2**30)
        self.seed_generator = keras.random.SeedGenerator(self.base_seed)
        # The student's drop-path draws are re-keyed each step as well.
        self.drop_path_generators = [
            layer.seed_generator for layer in student.drop_paths if layer.seed_generator is not None
        ]
        # Optimizer steps taken (train steps started) and student states folded
        # into the teacher; both survive checkpoints, so resuming is exact.
        self.steps_seen = self.add_weight(
            shape=(), initializer="zeros", dtype="int32", trainable=False, name="steps_seen"
        )
        self.states_folded = self.add_weight(
            shape=(), initializer="zeros", dtype="int32", trainable=False, name="states_folded"
        )
        self._pairs = [
            (t, s)
            for t, s in zip(self.teacher.weights, student.weights)
            if "float" in str(s.dtype)
        ]
        self.built = True  # every sub-model is already built

    # ----------------------------------------------------------------- mixing
    def sample_mix(self):
        """Draws one batch's mixing (see :func:`keras_hiri.mixing.sample`)."""
        return mixing.sample(self.image_shape, self.seed_generator, self.mixup_alpha,
                             self.cutmix_alpha, self.switch_prob)

    def image_mask(self, mix, height, width):
        """The mixing weight of sample ``i`` on a ``height x width`` grid."""
        return mixing.mask(mix, self.image_shape, height, width)

    def mix_images(self, x, mix):
        return mixing.mix_images(x, mix)

    def mix_labels(self, y, mix):
        """Label-smoothed one-hot ``y`` mixed with its flipped partner."""
        return mixing.mix_labels(mixing.smooth(self.one_hot(y), self.label_smoothing), mix)

    def mix_maps(self, maps, mix):
        """``y_hat``: teacher maps mixed with the downsampled mask, average-pooled."""
        return mixing.mix_maps(maps, mix, self.image_shape)

    def one_hot(self, y):
        y = ops.convert_to_tensor(y)
        if len(y.shape) == 1 or y.shape[-1] == 1 and self.num_classes > 1:
            y = ops.one_hot(ops.cast(ops.reshape(y, (-1,)), "int32"), self.num_classes)
        return ops.cast(y, "float32")

    # --------------------------------------------------------------- teacher
    def update_teacher(self, steps_seen=None):
        """Folds the student's current state into the EMA teacher, once per
        optimizer step (a no-op if that state is already folded in).
        ``steps_seen`` defaults to the counter's value."""
        steps_seen = self.steps_seen if steps_seen is None else steps_seen
        pending = self.states_folded < steps_seen
        m = ops.where(pending, self.ema_momentum, 1.0)
        for t, s in self._pairs:
            new = m * ops.cast(t, "float32") + (1.0 - m) * ops.cast(ops.stop_gradient(s), "float32")
            t.assign(ops.cast(new, t.dtype))
        # A new value, not the same array: JAX refuses to donate one buffer twice.
        self.states_folded.assign(ops.add(steps_seen, 0))

    # ------------------------------------------------------------- training
    def call(self, x, training=False):
        """The student's logits. With ``training=True``: the student on this
        step's mixed batch, ``{"logits", **mix}``.

        Before the student runs, the state of the last optimizer step is
        folded into the teacher if it is not yet (:meth:`update_teacher`,
        once per step). ``call`` changes no counter: its random draws (mixing,
        drop-path) are keyed by the checkpointed step counter, so calling it
        twice at one step gives the same result, and a run resumed from a backup
        draws exactly what the uninterrupted one did (seed-generator states are
        not part of Keras checkpoints). :meth:`compute_loss` counts the step.
        """
        if not training:
            return self.student(x, training=False)
        # Computed from the batch: in a TensorFlow graph a variable update that
        # does not depend on it runs even when reading the batch fails (below).
        self.update_teacher(self.steps_seen + _zero_computed_from(x))
        self._key_generators()
        mix = self.sample_mix()
        logits = self.student_logits(self.mix_images(x, mix), training=True)
        return {"logits": logits, **mix}

    def _key_generators(self):
        step = self.steps_seen * _DRAWS_PER_STEP
        generators = [self.seed_generator, *self.drop_path_generators]
        for i, generator in enumerate(generators):
            base = ops.convert_to_tensor((self.base_seed + i * 7919) % 2**31, "int32")
            generator.state.assign(ops.cast(ops.stack([base, step]), generator.state.dtype))

    def end_step(self, logits):
        """Counts this training step (called by :meth:`compute_loss`).

        The count is computed from this step's ``logits``: in a TensorFlow
        graph a variable update that does not depend on the batch runs even
        when reading the batch fails, and Keras' TensorFlow trainer ends each
        epoch of a dataset of unknown length with such a failed read (it
        counts ``optimizer.iterations`` once more per epoch; docs/DESIGN.md).
        """
        self.steps_seen.assign(self.steps_seen + _zero_computed_from(logits) + 1)

    def distillation_target(self, x, y, mix):
        """``y_bar = alpha * y_mix + (1 - alpha) * y_hat`` for one batch."""
        y_mix = self.mix_labels(y, mix)
        if self.alpha == 1.0:
            return y_mix
        maps = ops.stop_gradient(self.teacher_maps(x, training=False))
        y_hat = self.mix_maps(ops.cast(maps, "float32"), mix)
        return self.alpha * y_mix + (1.0 - self.alpha) * y_hat

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        if not isinstance(y_pred, dict):  # evaluation: the student on clean data
            per_sample = keras.losses.categorical_crossentropy(
                self.one_hot(y), y_pred, from_logits=not self.student_outputs_probs
            )
        else:
            self.end_step(y_pred["logits"])
            target = self.distillation_target(x, y, y_pred)
            per_sample = keras.losses.categorical_crossentropy(
                target, ops.cast(y_pred["logits"], "float32"), from_logits=True
            )
        if sample_weight is not None:
            per_sample = per_sample * ops.cast(ops.reshape(sample_weight, (-1,)), per_sample.dtype)
        loss = ops.mean(per_sample)
        for extra in self.losses:
            loss = loss + ops.cast(ops.sum(extra), loss.dtype)
        return loss

    def compute_metrics(self, x, y, y_pred, sample_weight=None):
        if isinstance(y_pred, dict):
            # Training images are mixed: metrics compare the student with the
            # mixed ground-truth labels (e.g. accuracy = argmax agreement).
            probs = ops.softmax(ops.cast(y_pred["logits"], "float32"))
            return super().compute_metrics(x, self.mix_labels(y, y_pred), probs, sample_weight)
        return super().compute_metrics(x, self.one_hot(y), y_pred, sample_weight)

    def build_training_state(self):
        """Creates the optimizer's slots and the compiled metrics' state now.

        ``fit`` and ``evaluate`` call it. Keras' TensorFlow trainer (without a
        distribution strategy) otherwise creates them inside the first trace
        of its step function, and ``tf.function`` then traces the step twice:
        once creating variables, once without. The first ``fit`` of the tiny
        test model took 66 s that way and 27 s with this (docs/DESIGN.md).
        The JAX and PyTorch trainers build the same state before their first
        step; there it changes nothing.
        """
        build_optimizer(self)
        # compute_metrics passes (one-hot or mixed labels, probabilities).
        probs = keras.KerasTensor((None, self.num_classes))
        for metric in self.metrics:  # the compiled-metrics container is built lazily
            if getattr(metric, "built", True) is False:
                metric.build(probs, probs)

    def fit(self, *args, callbacks=None, **kwargs):
        """``keras.Model.fit`` (same arguments). Builds the teacher and the
        optimizer state first, and at the end writes the last step's student
        weights back into ``self.student`` (a callback added unless given)."""
        callbacks = list(callbacks or [])
        if not any(isinstance(c, _FoldLastStudentState) for c in callbacks):
            callbacks.append(_FoldLastStudentState())
        self.build_training_state()
        return super().fit(*args, callbacks=callbacks, **kwargs)

    def evaluate(self, *args, **kwargs):
        """``keras.Model.evaluate`` of the student (same arguments), its
        training state built first so a fresh trainer can evaluate."""
        self.build_training_state()
        return super().evaluate(*args, **kwargs)

    def get_config(self):
        return {
            "name": self.name,
            "student": keras.saving.serialize_keras_object(self.student),
            "alpha": self.alpha,
            "ema_momentum": self.ema_momentum,
            "mixup_alpha": self.mixup_alpha,
            "cutmix_alpha": self.cutmix_alpha,
            "switch_prob": self.switch_prob,
            "label_smoothing": self.label_smoothing,
            "seed": self.seed,
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["student"] = keras.saving.deserialize_keras_object(config["student"])
        return cls(**config)


def _class_maps(model):
    """Per-position class probabilities: the head's LN + classifier applied to
    every token of the last stage (the teacher with average pooling removed)."""
    last = list(model.pyramid_outputs.values())[-1]
    logits = model.classifier(model.head_norm(last))
    probs = keras.layers.Activation("softmax", dtype="float32", name="teacher_map_softmax")(logits)
    return keras.Model(model.input, probs, name="teacher_maps")


def _validate(student, alpha, ema_momentum, mixup_alpha, cutmix_alpha, switch_prob, smoothing):
    if not hasattr(student, "drop_paths"):
        raise ValueError(
            "student must be a HIRI-ViT model (keras_hiri.HiriViT / HiriViTModel). "
            f"Received: {type(student).__name__}"
        )
    if student.classifier is None or student.head_norm is None or not student.stage_norms():
        raise ValueError(
            "student must be a HIRI-ViT built with include_top=True (it needs the "
            f"'{naming.HEAD_NORM}' and '{naming.CLASSIFIER}' layers)."
        )
    if student.data_format != "channels_last":
        raise ValueError(
            "EMADistillation mixes channels-last batches: build the student with "
            "data_format='channels_last' (its weights load into a channels_first model "
            f"afterwards). Received a student with data_format={student.data_format!r}"
        )
    if any(s is None for s in student.input.shape[1:3]):
        raise ValueError(
            "EMADistillation needs a student with a static input size. "
            f"Received input shape {student.input.shape}"
        )
    for name, value in (("alpha", alpha), ("switch_prob", switch_prob), ("label_smoothing", smoothing)):
        checks.number_in(name, value, 0, 1)
    checks.number_in("ema_momentum", ema_momentum, 0, 1, high_open=True)
    checks.number_in("mixup_alpha", mixup_alpha)
    checks.number_in("cutmix_alpha", cutmix_alpha)
