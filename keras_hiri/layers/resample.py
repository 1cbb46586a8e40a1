"""PyTorch-exact downsampling and upsampling of ``(B, H, W, C)`` maps, and the
pinned-grid resize layer."""

import keras
from keras import ops

from keras_hiri.layers import register


def avg_pool_2x2_ceil(x):
    """2x2 / stride-2 average pooling, ``ceil_mode=True``, padding excluded.

    Odd grids give ``ceil(n / 2)`` outputs and the border windows average only
    the pixels that exist (PyTorch's ``ceil_mode=True, count_include_pad=False``).
    Keras' own ``"same"`` average pooling counts the padded zeros on the torch
    backend, so it is not used here.
    """
    h, w = x.shape[1], x.shape[2]
    if h is not None and w is not None and h % 2 == 0 and w % 2 == 0:
        return ops.average_pool(x, 2, 2, padding="valid", data_format="channels_last")
    padding = ((0, 0), (0, 1), (0, 1), (0, 0))
    summed = ops.average_pool(ops.pad(x, padding), 2, 2, padding="valid",
                                data_format="channels_last")
    ones = ops.ones_like(x[..., :1])
    count = ops.average_pool(ops.pad(ones, padding), 2, 2, padding="valid",
                               data_format="channels_last")
    return summed / count


def upsample_2x_to(x, like):
    """Nearest-neighbour x2 upsampling (repetition), cropped to ``like``'s grid.

    Written as a broadcast and a reshape rather than ``ops.repeat``: Keras'
    PyTorch ``repeat`` fails on the "meta" device, so every symbolic pass
    through an HR block (each ``build``) fell back to computing a batch of 83
    on the CPU (building HIRI-ViT-L took 108 s on PyTorch); eagerly it is
    also faster on PyTorch and TensorFlow (docs/DESIGN.md).
    """
    batch, h, w, c = ops.shape(x)
    x = ops.broadcast_to(ops.reshape(x, (batch, h, 1, w, 1, c)), (batch, h, 2, w, 2, c))
    x = ops.reshape(x, (-1, h * 2, w * 2, c))
    h, w = like.shape[1], like.shape[2]
    if h is None or w is None:
        shape = ops.shape(like)
        h, w = shape[1], shape[2]
    return x[:, :h, :w, :]


def add_upsampled_2x(x, low):
    """``x + upsample_2x_to(low, x)``, the HR block's sum of its branches.

    On an even, static grid it is one broadcast add over ``x`` seen as
    ``(B, h/2, 2, w/2, 2, C)``, so the upsampled map is never materialised
    (``python benchmarks/kernels.py``: 1.3-2x faster eagerly on PyTorch and
    TensorFlow at the HR stages' maps, the same compiled; docs/DESIGN.md); on
    odd or dynamic grids, the sum itself.
    """
    h, w, c = x.shape[1], x.shape[2], x.shape[3]
    if h is None or w is None or c is None or h % 2 or w % 2:
        return ops.add(x, upsample_2x_to(low, x))
    low = ops.reshape(low, (-1, h // 2, 1, w // 2, 1, c))  # reshaped, not indexed: LiteRT slices <= 5-d
    out = ops.add(ops.reshape(x, (-1, h // 2, 2, w // 2, 2, c)), low)
    return ops.reshape(out, (-1, h, w, c))


@register
class GridResize(keras.layers.Layer):
    """Bilinear resize of a ``(B, H, W, C)`` map to a fixed grid.

    Used only by ``pin_late_grids=True`` when no integer stride reaches the
    pinned stage-3 grid (e.g. 384 input: 48 -> 24, resized to 28).
    """

    def __init__(self, size, **kwargs):
        super().__init__(**kwargs)
        self.size = tuple(int(s) for s in size)

    def call(self, x):
        return keras.ops.image.resize(x, self.size, interpolation="bilinear",
                                      data_format="channels_last")

    def compute_output_shape(self, input_shape):
        return (input_shape[0], *self.size, input_shape[-1])

    def get_config(self):
        config = super().get_config()
        config.update(size=self.size)
        return config
