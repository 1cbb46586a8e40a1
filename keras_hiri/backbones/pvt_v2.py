"""PVTv2 (Wang et al., "PVT v2: Improved baselines with Pyramid Vision
Transformer", 2022), the plain network of Table IX's PVTv2-B2 rows.

keras-hub's ``MiTBackbone`` (SegFormer's encoder) is the same family:
overlapping patch embedding (``7x7/4`` then ``3x3/2`` convolutions with a
LayerNorm), spatial-reduction attention (keys and values from a ``k = s = sr``
convolution + LayerNorm), Mix-FFN (``FC -> DWConv3x3 -> GELU -> FC``) and a
LayerNorm closing each stage. It cannot express PVTv2-B2, which is why these
layers exist (``docs/DESIGN.md``, "Table IX"):

* MiT's Mix-FFN ratio is fixed at 4; PVTv2-B2's is ``(8, 8, 4, 4)``;
* MiT's stage-closing LayerNorm has epsilon 1e-5; PVTv2's 1e-6;
* MiT recovers the grid as ``sqrt(tokens)``, so only square inputs work; these
  layers keep ``(B, H, W, C)`` maps and take any size;
* MiT has no classifier (PVTv2: average of the last stage's tokens -> FC);
* MiT projects keys and values with two ``Dense``; PVTv2 with one fused ``kv``
  (the same parameters; :class:`~keras_hiri.MultiHeadSelfAttention` here).

With the MiT settings (ratio 4, epsilon 1e-5) the two compute the same
function: ``tests/test_backbones.py`` copies a ``MiTBackbone``'s weights into
:func:`PVTv2` and compares the pyramids.
"""

import keras
from keras import ops

from keras_hiri import checks
from keras_hiri.layers import register
from keras_hiri.layers.activation import gelu
from keras_hiri.layers.blocks import CFFN, MultiHeadSelfAttention, ResidualBlock, to_tokens
from keras_hiri.layers.composite import CompositeLayer
from keras_hiri.layers.conv import Conv2D, conv2d
from keras_hiri.layers.init import conv_initializer
from keras_hiri.layers.norm import layer_norm

# nn.LayerNorm's default, used by PVTv2's patch embedding and reduction norm.
TORCH_LN_EPSILON = 1e-5


def torch_layer_norm(name, dtype=None):
    return keras.layers.LayerNormalization(epsilon=TORCH_LN_EPSILON, name=name, dtype=dtype)


@register
class OverlapPatchEmbed(CompositeLayer):
    """``Conv k x k / stride`` (``k // 2`` zeros on every side) + LayerNorm:
    PVTv2's stem (``k=7, stride=4``) and downsampling (``k=3, stride=2``)."""

    def __init__(self, filters, kernel_size=7, strides=4, **kwargs):
        super().__init__(**kwargs)
        for name, value in (("filters", filters), ("kernel_size", kernel_size), ("strides", strides)):
            checks.int_at_least(name, value, owner="OverlapPatchEmbed")
        self.filters, self.kernel_size, self.strides = filters, kernel_size, strides

    def build(self, input_shape):
        self.conv = conv2d(self.filters, self.kernel_size, self.strides, name=f"{self.name}_conv",
                           dtype=self.dtype_policy)
        self.norm = torch_layer_norm(f"{self.name}_norm", dtype=self.dtype_policy)
        self.build_chain(input_shape, self.conv, self.norm)

    def call(self, x):
        return self.norm(self.conv(x))

    def compute_output_shape(self, input_shape):
        return self.conv.compute_output_shape(input_shape)

    def get_config(self):
        config = super().get_config()
        config.update(filters=self.filters, kernel_size=self.kernel_size, strides=self.strides)
        return config


@register
class MixFFN(CFFN):
    """PVTv2's feed-forward: ``FC(C -> E*C) -> DWConv3x3 -> GELU -> FC(E*C -> C)``
    on a ``(B, H, W, C)`` map: the layers of :class:`~keras_hiri.CFFN` (Eq. 3),
    without its skip around the depthwise convolution and with GELU after it."""

    def call(self, x, training=None):
        return self.fc2(gelu(self.dw(self.fc1(x))))


@register
class PVTv2Block(ResidualBlock):
    """``x + SRA(LN(x))``, then ``x + MixFFN(LN(x))`` on a ``(B, H, W, C)`` map.

    Spatial-reduction attention: queries from every position, keys and values
    from ``LN(Conv sr x sr / sr (LN(x)))`` (``sr_ratio=1``: from every position).

    Args:
        dim: width ``C``.
        num_heads: attention heads (``dim`` must divide by it).
        sr_ratio: the reduction convolution's kernel and stride.
        mlp_ratio: Mix-FFN expansion.
        drop_path: stochastic-depth rate of both branches.
        data_format: layout of the input and output (see
            :class:`~keras_hiri.layers.composite.SpatialLayer`).
    """

    def __init__(self, dim, num_heads, sr_ratio=1, mlp_ratio=4, drop_path=0.0, **kwargs):
        super().__init__(dim, mlp_ratio, drop_path, **kwargs)
        checks.heads(dim, num_heads, owner="PVTv2Block")
        checks.int_at_least("sr_ratio", sr_ratio, owner="PVTv2Block")
        self.num_heads, self.sr_ratio = num_heads, sr_ratio

    def build(self, input_shape):
        n, dtype = self.name, self.dtype_policy
        hwc = self.channels_last_shape(input_shape)
        b, h, w, c = hwc
        self.norm1 = layer_norm(f"{n}_norm1", dtype=dtype)
        self.attn = MultiHeadSelfAttention(self.dim, self.num_heads, name=f"{n}_attn", dtype=dtype)
        self.norm2 = layer_norm(f"{n}_norm2", dtype=dtype)
        self.mlp = MixFFN(self.dim, self.mlp_ratio, name=f"{n}_mlp", dtype=dtype)
        self.norm1.build(hwc)
        tokens = None if None in (h, w) else h * w
        context = tokens
        if self.sr_ratio > 1:
            s = self.sr_ratio
            self.sr = Conv2D(self.dim, s, strides=s, padding="valid", kernel_initializer=conv_initializer(),
                             name=f"{n}_sr", dtype=dtype)
            self.sr_norm = torch_layer_norm(f"{n}_sr_norm", dtype=dtype)
            _, rh, rw, _ = self.build_chain(hwc, self.sr, self.sr_norm)
            context = None if None in (rh, rw) else rh * rw
        self.attn.build((b, tokens, c), (b, context, c))
        self.build_chain(hwc, self.norm2, self.mlp)
        super().build(input_shape)

    def call(self, x, training=None):
        x = self.to_channels_last(x)
        y = self.norm1(x)
        context = to_tokens(self.sr_norm(self.sr(y))) if self.sr_ratio > 1 else None
        y = self.attn(to_tokens(y), context=context)
        x = self.add_branch(x, ops.reshape(y, ops.shape(x)), training)
        return self.from_channels_last(self.add_branch(x, self.mlp(self.norm2(x)), training))

    def get_config(self):
        config = super().get_config()
        config.update(num_heads=self.num_heads, sr_ratio=self.sr_ratio)
        return config


class PVTv2Network:
    """The pieces :func:`keras_hiri.backbones.pyramid.assemble` stacks: PVTv2's
    stem, per-stage downsampling, blocks and norms, and its head (no norm)."""

    name = "pvt_v2"

    def __init__(self, widths, depths, heads, mlp_ratios, sr_ratios):
        self.widths, self.depths, self.heads = tuple(widths), tuple(depths), tuple(heads)
        self.mlp_ratios, self.sr_ratios = tuple(mlp_ratios), tuple(sr_ratios)

    def stem(self, name, dtype):
        return OverlapPatchEmbed(self.widths[0], 7, 4, name=name, dtype=dtype)

    def downsample(self, stage, name, dtype):
        return OverlapPatchEmbed(self.widths[stage - 1], 3, 2, name=name, dtype=dtype)

    def stage_blocks(self, stage):
        return self.depths[stage - 1]

    def block(self, stage, index, drop_path, name, dtype):
        i = stage - 1
        return PVTv2Block(self.widths[i], self.heads[i], self.sr_ratios[i], self.mlp_ratios[i],
                          drop_path=drop_path, name=name, data_format="channels_last", dtype=dtype)

    def stage_norm(self, stage, name, dtype):
        return layer_norm(name, dtype=dtype)

    def head_norm(self, name, dtype):
        return None
