"""The model's activation."""

from keras import ops


def gelu(x):
    """Exact GELU, ``0.5 x (1 + erf(x / sqrt 2))`` (``torch.nn.GELU()``)."""
    return ops.gelu(x, approximate=False)
