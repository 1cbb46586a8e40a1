"""The EMA teacher: a copy of a model whose state is the exponential moving
average of the model's state after each optimizer step."""

import keras
from keras import ops

from keras_hiri import checks
from keras_hiri.layers import register


@register
class EMATeacher(keras.layers.Layer):
    """A copy of ``model`` that follows it as ``t <- m t + (1 - m) s``.

    Every floating-point weight is averaged, trainable weights and BatchNorm
    statistics alike, the set timm's ``ModelEmaV3.update`` averages after each
    ``optimizer.step()``. :meth:`update` folds the followed state in at most
    once per optimizer step: the checkpointed counter ``folded`` says how many
    states are in, so a second call for the same step changes nothing and a
    run resumed from a checkpoint continues exactly.

    Args:
        model: the functional model to follow; the teacher is built from its
            config and starts from its weights.
        momentum: ``m``, in ``[0, 1)``.

    Example:
        ```python
        ema = EMATeacher(student, momentum=0.9998)
        ...                                   # after optimizer step k (k = 1, 2, ...)
        ema.update(student.weights, steps=k)
        ema.model.save("teacher.keras")
        ```
    """

    def __init__(self, model, momentum=0.9999, **kwargs):
        super().__init__(**kwargs)
        checks.built_model(model, "EMATeacher")
        checks.number_in("ema_momentum", momentum, 0, 1, high_open=True)
        self.momentum = float(momentum)
        self.model = model.__class__.from_config(model.get_config())
        self.model.set_weights(model.get_weights())
        self.model.trainable = False
        self.folded = self.add_weight(shape=(), initializer="zeros", dtype="int32",
                                      trainable=False, name="states_folded")
        self.built = True

    def update(self, weights, steps):
        """Folds ``weights`` (the followed model's ``weights``, in order) in if
        fewer than ``steps`` states are folded; ``steps`` is the number of
        optimizer steps taken (an int or a scalar tensor)."""
        m = ops.where(self.folded < steps, self.momentum, 1.0)
        for t, s in zip(self.model.weights, weights):
            if "float" in str(s.dtype):
                s = ops.cast(ops.stop_gradient(s), "float32")
                t.assign(ops.cast(m * ops.cast(t, "float32") + (1.0 - m) * s, t.dtype))
        # A new value, not the same array: JAX refuses to donate one buffer twice.
        self.folded.assign(ops.add(ops.cast(steps, "int32"), 0))

    def call(self, x, training=False):
        """The teacher's output for ``x`` (always in inference mode)."""
        return self.model(x, training=False)

    def compute_output_spec(self, x, training=False):
        return self.model.compute_output_spec(x)

    def get_config(self):
        config = super().get_config()
        config.update(model=keras.saving.serialize_keras_object(self.model), momentum=self.momentum)
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config, model=keras.saving.deserialize_keras_object(config["model"]))
        return cls(**config)
