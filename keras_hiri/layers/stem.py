"""Stems: the paper's HR-stem, and the Conv-stem / ViT-stem of its ablations.

Every stem maps an image ``(B, H, W, 3)`` to ``(B, ceil(H/4), ceil(W/4), C1)``.
"""

from keras_hiri import checks
from keras_hiri.layers import register
from keras_hiri.layers.activation import gelu
from keras_hiri.layers.composite import ConvNorm, SpatialLayer
from keras_hiri.layers.conv import conv2d
from keras_hiri.layers.norm import batch_norm
from keras_hiri.variants import halve


class _Stem(SpatialLayer):
    """Common width argument, shape rule and config of the stems."""

    def __init__(self, filters, **kwargs):
        super().__init__(**kwargs)
        checks.int_at_least("filters", filters, owner=type(self).__name__)
        self.filters = filters

    def compute_output_shape(self, input_shape):
        b, h, w, _ = self.channels_last_shape(input_shape)
        return self.in_layout((b, halve(halve(h)), halve(halve(w)), self.filters))

    def get_config(self):
        config = super().get_config()
        config.update(filters=self.filters)
        return config


@register
class HRStem(_Stem):
    """High-resolution stem (Sec. 4.1, Fig. 3c).

    ``Conv3x3/2 -> BN -> GELU`` to the half grid, then two parallel branches to
    the quarter grid whose sum is batch-normalised:

    * high-resolution branch: depthwise ``3x3`` + BN, then a strided ``3x3``;
    * low-resolution branch: strided ``3x3`` + BN + GELU, ``3x3`` + BN + GELU,
      then ``1x1``.

    Args:
        filters: output width ``C1`` (every conv in the stem uses it).
        fold_bn: build the BatchNorms folded (see :func:`keras_hiri.fold_batchnorm`).
        data_format: ``"channels_last"`` / ``"channels_first"`` layout of the
            input and output (``None``: ``keras.config.image_data_format()``).

    Any input size: each stride-2 step maps a side ``n`` to ``ceil(n / 2)``.
    """

    def __init__(self, filters, **kwargs):
        super().__init__(filters, **kwargs)

    def build(self, input_shape):
        input_shape = self.channels_last_shape(input_shape)
        n, f, filters = self.name, self.fold_bn, self.filters
        self.conv, self.bn = self.conv_bn("conv", "bn", filters, 3, 2)
        self.hi_dw, self.hi_bn = self.conv_bn("hi_dw", "hi_bn", None, 3)
        self.hi_conv = conv2d(filters, 3, 2, name=f"{n}_hi_conv", dtype=self.dtype_policy)
        self.lo_conv1, self.lo_bn1 = self.conv_bn("lo_conv1", "lo_bn1", filters, 3, 2)
        self.lo_conv2, self.lo_bn2 = self.conv_bn("lo_conv2", "lo_bn2", filters, 3, 1)
        self.lo_conv3 = conv2d(filters, 1, 1, name=f"{n}_lo_conv3", dtype=self.dtype_policy)
        self.out_bn = batch_norm(f"{n}_out_bn", f, dtype=self.dtype_policy)
        half = self.build_chain(input_shape, self.conv, self.bn)
        quarter = self.build_chain(half, self.hi_dw, self.hi_bn, self.hi_conv)
        self.build_chain(half, self.lo_conv1, self.lo_bn1, self.lo_conv2, self.lo_bn2, self.lo_conv3)
        self.out_bn.build(quarter)

    def bn_folds(self):
        return [
            (("conv",), "bn"), (("hi_dw",), "hi_bn"), (("lo_conv1",), "lo_bn1"),
            (("lo_conv2",), "lo_bn2"), (("hi_conv", "lo_conv3"), "out_bn"),
        ]

    def call(self, x, training=None):
        x = gelu(self.bn(self.conv(self.to_channels_last(x)), training=training))
        hi = self.hi_conv(self.hi_bn(self.hi_dw(x), training=training))
        lo = gelu(self.lo_bn1(self.lo_conv1(x), training=training))
        lo = gelu(self.lo_bn2(self.lo_conv2(lo), training=training))
        lo = self.lo_conv3(lo)
        return self.from_channels_last(self.out_bn(hi + lo, training=training))


@register
class ConvStem(_Stem):
    """Conv-stem of Table VII row 5: stacked ``3x3`` convolutions, stride 4.

    ``Conv3x3/2 + BN + GELU -> Conv3x3 + BN + GELU -> Conv3x3/2 -> BN``, all
    ``filters`` wide (the paper does not give the hidden width; see DESIGN.md).
    Takes ``filters``, ``fold_bn`` and ``data_format`` as :class:`HRStem`.
    """

    def __init__(self, filters, **kwargs):
        super().__init__(filters, **kwargs)

    def build(self, input_shape):
        input_shape = self.channels_last_shape(input_shape)
        n, f, filters = self.name, self.fold_bn, self.filters
        self.conv1, self.bn1 = self.conv_bn("conv1", "bn1", filters, 3, 2)
        self.conv2, self.bn2 = self.conv_bn("conv2", "bn2", filters, 3, 1)
        self.conv3 = conv2d(filters, 3, 2, name=f"{n}_conv3", dtype=self.dtype_policy)
        self.out_bn = batch_norm(f"{n}_out_bn", f, dtype=self.dtype_policy)
        self.build_chain(input_shape, self.conv1, self.bn1, self.conv2, self.bn2, self.conv3, self.out_bn)

    def bn_folds(self):
        return [(("conv1",), "bn1"), (("conv2",), "bn2"), (("conv3",), "out_bn")]

    def call(self, x, training=None):
        x = gelu(self.bn1(self.conv1(self.to_channels_last(x)), training=training))
        x = gelu(self.bn2(self.conv2(x), training=training))
        return self.from_channels_last(self.out_bn(self.conv3(x), training=training))


@register
class ViTStem(ConvNorm, _Stem):
    """ViT-stem of Table VII row 1: one ``7x7`` stride-4 convolution + norm."""

    def __init__(self, filters, norm="bn", **kwargs):
        super().__init__(filters, **kwargs)
        self.conv_norm(filters, 7, 4, norm)


STEMS = {"hr": HRStem, "conv": ConvStem, "vit": ViTStem}

