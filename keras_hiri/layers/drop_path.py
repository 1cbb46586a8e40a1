"""Stochastic depth."""

import keras
from keras import ops

from keras_hiri import checks
from keras_hiri.layers import register


@register
class DropPath(keras.layers.Layer):
    """Stochastic depth: drops a whole residual branch per sample in training.

    Args:
        rate: probability of dropping the branch (0 disables the layer).
        seed: optional integer seed.
    """

    def __init__(self, rate=0.0, seed=None, **kwargs):
        super().__init__(**kwargs)
        checks.number_in("rate", rate, 0, 1, high_open=True, owner="DropPath")
        self.rate = float(rate)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed) if rate > 0 else None

    def drops(self, training):
        """Whether a call with this ``training`` drops anything (otherwise the
        layer is the identity, and callers may skip calling it)."""
        return bool(training) and self.rate > 0.0

    def call(self, x, training=None):
        if not self.drops(training):
            return x
        keep = 1.0 - self.rate
        shape = (ops.shape(x)[0],) + (1,) * (len(x.shape) - 1)
        mask = keras.random.uniform(shape, seed=self.seed_generator, dtype=x.dtype)
        mask = ops.floor(mask + keep)
        return x * mask / keep

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(rate=self.rate, seed=self.seed)
        return config
