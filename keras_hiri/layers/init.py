"""The authors' weight initialisers, drawn on the host on JAX."""

import keras
import numpy as np

from keras_hiri import ops as hiri_ops
from keras_hiri.layers import register


@register
class TruncatedNormal(keras.initializers.TruncatedNormal):
    """``keras.initializers.TruncatedNormal`` whose samples NumPy draws on the
    host from the initializer's int seed on JAX (:func:`keras_hiri.ops.draws_on_host`;
    a ``SeedGenerator`` seed takes Keras' own path).

    Keras draws on the backend: on JAX every new kernel shape compiles an XLA
    program for the sampler and more for its scale and shift (HIRI-ViT-S: 128
    compiles, 9.1 s of an 11.7 s first build on a 2-core CPU;
    ``python benchmarks/build_time.py``). The distribution, the seeding
    (``keras.utils.set_random_seed`` fixes it; an int seed gives the same
    values on every call) and the config are Keras'; the host's values are
    NumPy's (the same on every backend), not those Keras' sampler gives.
    """

    def __call__(self, shape, dtype=None):
        if not hiri_ops.draws_on_host(self.seed):
            return super().__call__(shape, dtype=dtype)
        return hiri_ops.host_normal(self.seed, tuple(shape), True, self.mean, self.stddev, dtype)


@register
class VarianceScaling(keras.initializers.VarianceScaling):
    """``keras.initializers.VarianceScaling`` whose normal distributions NumPy
    samples on the host where and for the reason :class:`TruncatedNormal`
    gives (the uniform one, explicit fan axes and a ``SeedGenerator`` seed
    take Keras' own path)."""

    def __call__(self, shape, dtype=None):
        custom_axes = getattr(self, "input_axes", None) is not None  # Keras >= 3.12's option
        if not hiri_ops.draws_on_host(self.seed) or self.distribution == "uniform" or custom_axes:
            return super().__call__(shape, dtype=dtype)
        shape = tuple(shape)
        # Keras' fans: a kernel's last two axes are (in, out), the rest its receptive field.
        if len(shape) < 2:
            fan_in = fan_out = shape[0] if shape else 1
        else:
            receptive = int(np.prod(shape[:-2]))
            fan_in, fan_out = shape[-2] * receptive, shape[-1] * receptive
        fan = {"fan_in": fan_in, "fan_out": fan_out, "fan_avg": (fan_in + fan_out) / 2}[self.mode]
        stddev = np.sqrt(self.scale / max(1.0, fan))
        truncated = self.distribution == "truncated_normal"
        if truncated:
            stddev /= 0.87962566103423978  # std of a unit normal truncated at +-2, as Keras
        return hiri_ops.host_normal(self.seed, shape, truncated, 0.0, stddev, dtype)


def conv_initializer():
    """``normal(0, sqrt(2 / fan_out))`` as in the authors' ``_init_weights``."""
    return VarianceScaling(scale=2.0, mode="fan_out", distribution="untruncated_normal")


def dense_initializer():
    """Truncated ``normal(0, 0.02)`` as in the authors' ``_init_weights``."""
    return TruncatedNormal(stddev=0.02)
