"""BatchNorm and LayerNorm with the authors' settings."""

import keras

BN_MOMENTUM = 0.9
BN_EPSILON = 1e-5
LN_EPSILON = 1e-6


def batch_norm(name, folded=False, dtype=None):
    """A BatchNormalization, or, with ``folded=True`` (its statistics live in the
    preceding convolution, see :mod:`keras_hiri.folding`), an ``Identity``."""
    if folded:
        return keras.layers.Identity(name=name, dtype=dtype)
    return keras.layers.BatchNormalization(
        momentum=BN_MOMENTUM, epsilon=BN_EPSILON, name=name, dtype=dtype
    )


def layer_norm(name, dtype=None):
    return keras.layers.LayerNormalization(epsilon=LN_EPSILON, name=name, dtype=dtype)


def make_norm(kind, name, folded=False, dtype=None):
    """``kind`` is ``"bn"`` or ``"ln"``; both normalise the channel axis.
    ``folded`` applies to BN only (a LayerNorm cannot be folded)."""
    if kind == "bn":
        return batch_norm(name, folded, dtype=dtype)
    if kind == "ln":
        return layer_norm(name, dtype=dtype)
    raise ValueError(f"Unknown norm kind {kind!r}; expected 'bn' or 'ln'.")
