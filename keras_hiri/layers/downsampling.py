"""Downsampling between stages: IRDS-a, IRDS-b (Sec. 4.3, Fig. 5) and the plain
strided convolution of the ablations (Fig. 5a).

All of them map ``(B, H, W, Cin)`` to ``(B, ceil(H/2), ceil(W/2), Cout)``, or,
with ``strides=1`` (the pinned-grid rule of the paper's 224/384 settings), keep
the grid.
"""

from keras_hiri import checks
from keras_hiri.layers import register
from keras_hiri.layers.activation import gelu
from keras_hiri.layers.composite import ConvNorm, SpatialLayer
from keras_hiri.layers.conv import conv2d, depthwise_conv2d
from keras_hiri.layers.norm import make_norm
from keras_hiri.layers.resample import avg_pool_2x2_ceil
from keras_hiri.variants import halve


class _Downsample(SpatialLayer):
    """Common arguments, shape rule and config of the downsampling layers."""

    def __init__(self, filters, strides=2, **kwargs):
        super().__init__(**kwargs)
        checks.int_at_least("filters", filters, owner=type(self).__name__)
        if strides not in (1, 2):
            raise ValueError(f"strides must be 1 or 2. Received: strides={strides}")
        self.filters = filters
        self.strides = strides

    def shortcut_pool(self, x):
        return avg_pool_2x2_ceil(x) if self.strides == 2 else x

    def pooled_shape(self, input_shape):
        """The shape :meth:`shortcut_pool` gives."""
        b, h, w, c = input_shape
        return (b, halve(h), halve(w), c) if self.strides == 2 else tuple(input_shape)

    def compute_output_shape(self, input_shape):
        b, h, w, _ = self.channels_last_shape(input_shape)
        if self.strides == 2:
            h, w = halve(h), halve(w)
        return self.in_layout((b, h, w, self.filters))

    def get_config(self):
        config = super().get_config()
        config.update(filters=self.filters, strides=self.strides)
        return config


@register
class IRDSa(_Downsample):
    """Inverted Residual Downsampling, variant a (between stages 1-2 and 2-3).

    main: ``Conv3x3/s (Cin -> 2*Cout) + BN + GELU -> Conv1x1 (-> Cout) + BN``;
    shortcut: ``AvgPool2x2/s (ceil) -> Conv1x1 (Cin -> Cout) + BN``; output is
    the sum.

    Args:
        filters: output width ``Cout``.
        strides: 2 (``ceil(n / 2)`` per side) or 1 (the grid kept).
        expansion: the main branch's hidden width is ``expansion * Cout``.
        fold_bn: build the BatchNorms folded (see :func:`keras_hiri.fold_batchnorm`).
        data_format: ``"channels_last"`` / ``"channels_first"`` layout of the
            input and output (``None``: ``keras.config.image_data_format()``).
    """

    def __init__(self, filters, strides=2, expansion=2, **kwargs):
        super().__init__(filters, strides, **kwargs)
        checks.int_at_least("expansion", expansion, owner=type(self).__name__)
        self.expansion = expansion

    def build(self, input_shape):
        input_shape = self.channels_last_shape(input_shape)
        filters, expansion = self.filters, self.expansion
        self.conv1, self.bn1 = self.conv_bn("conv1", "bn1", expansion * filters, 3, self.strides)
        self.conv2, self.bn2 = self.conv_bn("conv2", "bn2", filters, 1)
        self.short_conv, self.short_bn = self.conv_bn("short_conv", "short_bn", filters, 1)
        self.build_chain(input_shape, self.conv1, self.bn1, self.conv2, self.bn2)
        self.build_chain(self.pooled_shape(input_shape), self.short_conv, self.short_bn)

    def bn_folds(self):
        return [(("conv1",), "bn1"), (("conv2",), "bn2"), (("short_conv",), "short_bn")]

    def call(self, x, training=None):
        x = self.to_channels_last(x)
        y = gelu(self.bn1(self.conv1(x), training=training))
        y = self.bn2(self.conv2(y), training=training)
        s = self.short_bn(self.short_conv(self.shortcut_pool(x)), training=training)
        return self.from_channels_last(y + s)

    def get_config(self):
        config = super().get_config()
        config.update(expansion=self.expansion)
        return config


@register
class IRDSb(_Downsample):
    """Inverted Residual Downsampling, variant b (between stages 3-4 and 4-5).

    main: ``Conv1x1 (Cin -> 3*Cout) + BN + GELU -> DWConv3x3/s -> Conv1x1
    (-> Cout)`` (norm and activation only after the first conv, as Sec. 4.3
    says); shortcut: ``AvgPool2x2/s (ceil) -> Conv1x1 (Cin -> Cout)``; the sum
    is normalised with ``norm`` (LayerNorm in front of Transformer stages).
    ``norm`` is ``"ln"`` or ``"bn"``; the other arguments are :class:`IRDSa`'s
    (``expansion`` defaults to 3).
    """

    def __init__(self, filters, strides=2, expansion=3, norm="ln", **kwargs):
        super().__init__(filters, strides, **kwargs)
        checks.int_at_least("expansion", expansion, owner=type(self).__name__)
        self.expansion = expansion
        self.norm_kind = norm

    def build(self, input_shape):
        input_shape = self.channels_last_shape(input_shape)
        n, f, filters, expansion = self.name, self.fold_bn, self.filters, self.expansion
        self.conv1, self.bn1 = self.conv_bn("conv1", "bn1", expansion * filters, 1)
        self.dw = depthwise_conv2d(3, self.strides, name=f"{n}_dw", dtype=self.dtype_policy)
        self.conv2 = conv2d(filters, 1, name=f"{n}_conv2", dtype=self.dtype_policy)
        self.short_conv = conv2d(filters, 1, name=f"{n}_short_conv", dtype=self.dtype_policy)
        self.norm = make_norm(self.norm_kind, f"{n}_norm", f, dtype=self.dtype_policy)
        out = self.build_chain(input_shape, self.conv1, self.bn1, self.dw, self.conv2)
        self.build_chain(self.pooled_shape(input_shape), self.short_conv)
        self.norm.build(out)

    def bn_folds(self):
        folds = [(("conv1",), "bn1")]
        if self.norm_kind == "bn":
            folds.append((("conv2", "short_conv"), "norm"))
        return folds

    def call(self, x, training=None):
        x = self.to_channels_last(x)
        y = gelu(self.bn1(self.conv1(x), training=training))
        y = self.conv2(self.dw(y))
        s = self.short_conv(self.shortcut_pool(x))
        return self.from_channels_last(self.norm(y + s, training=training))

    def get_config(self):
        config = super().get_config()
        config.update(expansion=self.expansion, norm=self.norm_kind)
        return config


@register
class PlainDownsample(ConvNorm, _Downsample):
    """The typical M-ViT downsampling (Fig. 5a): ``Conv3x3/s`` + norm."""

    def __init__(self, filters, strides=2, norm="bn", **kwargs):
        super().__init__(filters, strides, **kwargs)
        self.conv_norm(filters, 3, strides, norm)


# Builds the downsampling a :class:`keras_hiri.variants.StageSpec` names.
DOWNSAMPLERS = {
    "irds_a": lambda spec, **kw: IRDSa(spec.width, spec.strides, **kw),
    "irds_b": lambda spec, **kw: IRDSb(spec.width, spec.strides, norm=spec.norm, **kw),
    "plain": lambda spec, **kw: PlainDownsample(spec.width, spec.strides, norm=spec.norm, **kw),
}
