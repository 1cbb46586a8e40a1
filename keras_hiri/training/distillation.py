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
   teacher (:class:`~keras_hiri.training.ema.EMATeacher`) if the previous
   optimizer step's result is not folded yet (its weights and the BatchNorm
   statistics of its forward pass: what the student holds before this step's
   forward pass changes them), so the teacher is the EMA of the student after
   every optimizer step. It then draws CutMix
   (probability ``switch_prob``) or MixUp, pairs sample ``i`` with sample
   ``B-1-i`` (the batch flipped, a permutation of itself), and runs the
   student on the mixed images (its draws are keyed by the step counter:
   :class:`~keras_hiri.training.seeds.StepSeeds`).
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

from keras_hiri import checks, naming
from keras_hiri.layers import register
from keras_hiri.training import mixing
from keras_hiri.training.ema import EMATeacher
from keras_hiri.training.seeds import StepSeeds, zero_after
from keras_hiri.training.state import build_optimizer


class _FoldLastStudentState(keras.callbacks.Callback):
    """Folds the student's final state into the teacher when ``fit`` ends."""

    def on_train_end(self, logs=None):
        self.model.ema.update(self.model.student.weights, self.model.steps_seen)


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
        seed: seed of the step's draws (CutMix/MixUp, drop-path), keyed by
            ``(seed, optimizer step)`` so a resumed run draws what the
            uninterrupted one did. ``None``: Python's ``random`` picks one.

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

    def __init__(self, student, alpha=0.5, ema_momentum=0.9999, mixup_alpha=0.8, cutmix_alpha=1.0,
                 switch_prob=0.5, label_smoothing=0.1, seed=None, **kwargs):
        super().__init__(**kwargs)
        check_arguments(student, alpha, mixup_alpha, cutmix_alpha, switch_prob, label_smoothing)
        self.student, self.seed, self.alpha, self.label_smoothing = student, seed, alpha, label_smoothing
        self.mixup_alpha, self.cutmix_alpha, self.switch_prob = mixup_alpha, cutmix_alpha, switch_prob
        self.num_classes = student.classifier.units
        self.image_shape = tuple(student.input.shape[1:3])
        self.student_outputs_probs = student.layers[-1].name == naming.CLASSIFIER_ACTIVATION
        self.student_logits = keras.Model(student.input, student.classifier.output, name="student_logits")
        self.ema = EMATeacher(student, ema_momentum, name="ema_teacher")
        self.teacher_maps = class_maps(self.ema.model)
        base_seed = seed if seed is not None else random.randint(0, 2**30)
        self.seed_generator = keras.random.SeedGenerator(base_seed)
        drop_paths = [layer.seed_generator for layer in student.drop_paths if layer.seed_generator]
        self.seeds = StepSeeds(base_seed, [self.seed_generator, *drop_paths])
        self.steps_seen = self.add_weight(shape=(), initializer="zeros", dtype="int32",  # optimizer steps
                                          trainable=False, name="steps_seen")  # (checkpointed)
        self.built = True  # every sub-model is already built

    teacher = property(lambda self: self.ema.model, doc="The EMA teacher, a HIRI-ViT model.")

    def sample_mix(self):
        """Draws one batch's mixing (see :func:`keras_hiri.training.mixing.sample`)."""
        return mixing.sample(self.image_shape, self.seed_generator, self.mixup_alpha,
                             self.cutmix_alpha, self.switch_prob)

    def mix_labels(self, y, mix):
        """Label-smoothed one-hot ``y`` mixed with its flipped partner."""
        return mixing.mix_labels(mixing.smooth(mixing.one_hot(y, self.num_classes), self.label_smoothing), mix)

    def call(self, x, training=False):
        """The student's logits; with ``training=True``, the last step folded into
        the teacher (once), the student on this step's mixed batch: ``{"logits", **mix}``
        (draws keyed by the step counter, which only ``compute_loss`` advances)."""
        if not training:
            return self.student(x, training=False)
        self.ema.update(self.student.weights, self.steps_seen + zero_after(x))
        self.seeds.key(self.steps_seen)
        mix = self.sample_mix()
        logits = self.student_logits(mixing.mix_images(x, mix), training=True)
        return {"logits": logits, **mix}

    def distillation_target(self, x, y, mix):
        """``y_bar = alpha * y_mix + (1 - alpha) * y_hat`` for one batch."""
        y_mix = self.mix_labels(y, mix)
        if self.alpha == 1.0:
            return y_mix
        maps = ops.cast(ops.stop_gradient(self.teacher_maps(x, training=False)), "float32")
        return self.alpha * y_mix + (1.0 - self.alpha) * mixing.mix_maps(maps, mix, self.image_shape)

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        if isinstance(y_pred, dict):  # a training step: count it, then the distillation loss
            self.steps_seen.assign(self.steps_seen + zero_after(y_pred["logits"]) + 1)
            target, logits, from_logits = self.distillation_target(x, y, y_pred), y_pred["logits"], True
        else:  # evaluation: the student on clean data
            target, logits = mixing.one_hot(y, self.num_classes), y_pred
            from_logits = not self.student_outputs_probs
        per_sample = keras.losses.categorical_crossentropy(target, ops.cast(logits, "float32"),
                                                           from_logits=from_logits)
        if sample_weight is not None:
            per_sample = per_sample * ops.cast(ops.reshape(sample_weight, (-1,)), per_sample.dtype)
        return ops.mean(per_sample) + sum(ops.cast(ops.sum(extra), "float32") for extra in self.losses)

    def compute_metrics(self, x, y, y_pred, sample_weight=None):
        """Training images are mixed: metrics compare the student with the mixed labels."""
        if isinstance(y_pred, dict):
            probs = ops.softmax(ops.cast(y_pred["logits"], "float32"))
            return super().compute_metrics(x, self.mix_labels(y, y_pred), probs, sample_weight)
        return super().compute_metrics(x, mixing.one_hot(y, self.num_classes), y_pred, sample_weight)

    def fit(self, *args, callbacks=None, **kwargs):
        """``keras.Model.fit``; the last step is folded into the teacher when it ends."""
        callbacks = list(callbacks or [])
        if not any(isinstance(c, _FoldLastStudentState) for c in callbacks):
            callbacks.append(_FoldLastStudentState())
        build_optimizer(self, metric_shape=(None, self.num_classes))  # before a step is traced
        return super().fit(*args, callbacks=callbacks, **kwargs)

    def evaluate(self, *args, **kwargs):
        """``keras.Model.evaluate`` of the student."""
        build_optimizer(self, metric_shape=(None, self.num_classes))
        return super().evaluate(*args, **kwargs)

    def get_config(self):
        return {"name": self.name, "student": keras.saving.serialize_keras_object(self.student),
                "alpha": self.alpha, "ema_momentum": self.ema.momentum, "mixup_alpha": self.mixup_alpha,
                "cutmix_alpha": self.cutmix_alpha, "switch_prob": self.switch_prob,
                "label_smoothing": self.label_smoothing, "seed": self.seed}

    @classmethod
    def from_config(cls, config):
        return cls(**dict(config, student=keras.saving.deserialize_keras_object(config["student"])))


def class_maps(model):
    """Per-position class probabilities: the head's LN + classifier applied to
    every token of the last stage (the teacher with average pooling removed)."""
    last = list(model.pyramid_outputs.values())[-1]
    logits = model.classifier(model.head_norm(last))
    probs = keras.layers.Activation("softmax", dtype="float32", name="teacher_map_softmax")(logits)
    return keras.Model(model.input, probs, name="teacher_maps")


def check_arguments(student, alpha, mixup_alpha, cutmix_alpha, switch_prob, label_smoothing):
    """``student`` must be a channels-last HIRI-ViT with a top and a static
    input size; the numbers in their ranges (``ema_momentum``: the teacher's)."""
    for name, value in (("alpha", alpha), ("switch_prob", switch_prob), ("label_smoothing", label_smoothing)):
        checks.number_in(name, value, 0, 1)
    checks.number_in("mixup_alpha", mixup_alpha)
    checks.number_in("cutmix_alpha", cutmix_alpha)
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
