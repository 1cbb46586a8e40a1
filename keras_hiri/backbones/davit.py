"""DaViT (Ding et al., "DaViT: Dual Attention Vision Transformers", ECCV 2022),
the plain network of Table IX's DaViT-Tiny rows, written after timm's
``davit_tiny`` (the reference the issue names; no weights are read).

Each stage runs ``depth`` pairs of a spatial-window block and a channel-group
block; both start each branch with a depthwise ``3x3`` positional encoding
(``x + DWConv(x)``, timm's ``ConvPosEnc``). The stem is ``Conv7x7/4`` +
LayerNorm (PVTv2's :class:`~keras_hiri.backbones.pvt_v2.OverlapPatchEmbed`),
the downsampling LayerNorm + ``Conv2x2/2``, the head average pooling ->
LayerNorm -> FC; every LayerNorm has epsilon 1e-5, as timm's.
Sides not divisible by the window (7) are padded at the bottom and right for
the window attention, as timm does.
"""

import keras
from keras import ops

from keras_hiri import checks
from keras_hiri import ops as hiri_ops
from keras_hiri.layers import register
from keras_hiri.layers.activation import gelu
from keras_hiri.layers.blocks import ResidualBlock, split_heads, to_tokens
from keras_hiri.layers.composite import CompositeLayer
from keras_hiri.backbones.pvt_v2 import OverlapPatchEmbed
from keras_hiri.layers.conv import Conv2D, dense, depthwise_conv2d
from keras_hiri.layers.init import conv_initializer

LN_EPSILON = 1e-5  # timm's DaViT: nn.LayerNorm's default everywhere


def davit_layer_norm(name, dtype=None):
    return keras.layers.LayerNormalization(epsilon=LN_EPSILON, name=name, dtype=dtype)


class _DualAttention(CompositeLayer):
    """``qkv = FC(C -> 3C)`` and ``proj = FC(C -> C)`` (both with bias) of a
    ``(B, H, W, C)`` map; subclasses say how the heads attend."""

    def __init__(self, dim, num_heads, **kwargs):
        super().__init__(**kwargs)
        checks.heads(dim, num_heads, owner=type(self).__name__)
        self.dim, self.num_heads = dim, num_heads

    def build(self, input_shape):
        self.qkv = dense(3 * self.dim, name=f"{self.name}_qkv", dtype=self.dtype_policy)
        self.proj = dense(self.dim, name=f"{self.name}_proj", dtype=self.dtype_policy)
        self.build_chain(input_shape, self.qkv)
        self.proj.build(input_shape)

    def split_qkv(self, qkv):
        """``qkv``'s output ``(B, N, 3C)`` -> ``q, k, v`` as ``(B, N, heads, C / heads)``."""
        return [split_heads(t, self.num_heads) for t in ops.split(qkv, 3, axis=-1)]

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(dim=self.dim, num_heads=self.num_heads)
        return config


@register
class WindowAttention(_DualAttention):
    """Multi-head self-attention inside non-overlapping ``window x window``
    windows of a ``(B, H, W, C)`` map (the map is padded at the bottom and
    right to whole windows, and cropped back)."""

    def __init__(self, dim, num_heads, window_size=7, **kwargs):
        super().__init__(dim, num_heads, **kwargs)
        checks.int_at_least("window_size", window_size, owner="WindowAttention")
        self.window_size = window_size

    def build(self, input_shape):
        super().build(input_shape)
        self.fused_attention = hiri_ops.use_fused_attention(self.compute_dtype)

    def call(self, x):
        # The linear maps act per position, so they run on the whole map (the
        # profiler then counts them per position): qkv on the padded map, as
        # timm computes it on padded windows; proj after cropping.
        s, c = self.window_size, self.dim
        shape = ops.shape(x)
        b = shape[0]
        # Static sides where known (the padding is then decided here); a
        # TensorFlow graph with dynamic sides pads by tensors, possibly zero.
        h = x.shape[1] if x.shape[1] is not None else shape[1]
        w = x.shape[2] if x.shape[2] is not None else shape[2]
        ph, pw = -h % s, -w % s
        padded = not (isinstance(ph, int) and isinstance(pw, int)) or ph or pw
        if padded:
            x = ops.pad(x, ((0, 0), (0, ph), (0, pw), (0, 0)))
        hp, wp = h + ph, w + pw
        qkv = ops.reshape(self.qkv(x), (b, hp // s, s, wp // s, s, 3 * c))
        qkv = ops.reshape(ops.transpose(qkv, (0, 1, 3, 2, 4, 5)), (-1, s * s, 3 * c))
        q, k, v = self.split_qkv(qkv)
        out = ops.reshape(hiri_ops.attention(q, k, v, self.fused_attention), (b, hp // s, wp // s, s, s, c))
        out = ops.reshape(ops.transpose(out, (0, 1, 3, 2, 4, 5)), (b, hp, wp, c))
        return self.proj(out[:, :h, :w, :] if padded else out)

    def attention_macs(self, input_shape):
        """``Q K^T`` and ``A V`` over the padded windows, for one image."""
        s = self.window_size
        h, w = -(-input_shape[1] // s) * s, -(-input_shape[2] // s) * s
        return 2 * h * w * s * s * self.dim

    def get_config(self):
        config = super().get_config()
        config.update(window_size=self.window_size)
        return config


@register
class ChannelAttention(_DualAttention):
    """Channel-group attention: within each head, the ``d x d`` matrix
    ``softmax(scale * K^T V)`` over the head's ``d`` channels mixes ``Q``'s
    channels, for every token: ``out = Q A^T`` (global context at ``O(N d^2)``)."""

    def call(self, x):
        shape = ops.shape(x)
        heads = self.split_qkv(self.qkv(to_tokens(x)))
        q, k, v = (ops.transpose(t, (0, 2, 1, 3)) for t in heads)  # (B, heads, N, d)
        k = k * ops.cast(float(self.dim // self.num_heads) ** -0.5, k.dtype)
        logits = ops.matmul(ops.transpose(k, (0, 1, 3, 2)), v)  # (B, heads, d, d)
        weights = ops.cast(ops.softmax(ops.cast(logits, "float32"), axis=-1), q.dtype)
        out = ops.matmul(q, ops.transpose(weights, (0, 1, 3, 2)))  # (B, heads, N, d)
        out = ops.reshape(ops.transpose(out, (0, 2, 1, 3)), (shape[0], -1, self.dim))
        return ops.reshape(self.proj(out), shape)

    def attention_macs(self, input_shape):
        """``K^T V`` and ``Q A^T``, for one image."""
        return 2 * input_shape[1] * input_shape[2] * self.dim * (self.dim // self.num_heads)


@register
class DualAttentionBlock(ResidualBlock):
    """DaViT's spatial (``attention="window"``) or channel (``"channel"``)
    block on a ``(B, H, W, C)`` map::

        x = x + DWConv3x3(x);  x = x + Attention(LN(x))
        x = x + DWConv3x3(x);  x = x + MLP(LN(x))      # MLP: FC, GELU, FC

    Args:
        dim: width ``C``.
        num_heads: attention heads.
        attention: ``"window"`` or ``"channel"``.
        window_size: the window side of the spatial block.
        mlp_ratio: MLP expansion.
        drop_path: stochastic-depth rate of both residual branches.
        data_format: layout of the input and output.
    """

    ATTENTIONS = ("window", "channel")

    def __init__(self, dim, num_heads, attention="window", window_size=7, mlp_ratio=4, drop_path=0.0,
                 **kwargs):
        super().__init__(dim, mlp_ratio, drop_path, **kwargs)
        if attention not in self.ATTENTIONS:
            raise ValueError(f"attention must be one of {self.ATTENTIONS}. Received: attention={attention!r}")
        checks.heads(dim, num_heads, owner="DualAttentionBlock")
        self.num_heads, self.attention, self.window_size = num_heads, attention, window_size

    def build(self, input_shape):
        n, dtype = self.name, self.dtype_policy
        hwc = self.channels_last_shape(input_shape)
        self.cpe1 = depthwise_conv2d(3, name=f"{n}_cpe1", dtype=dtype)
        self.norm1 = davit_layer_norm(f"{n}_norm1", dtype=dtype)
        if self.attention == "window":
            self.attn = WindowAttention(self.dim, self.num_heads, self.window_size, name=f"{n}_attn", dtype=dtype)
        else:
            self.attn = ChannelAttention(self.dim, self.num_heads, name=f"{n}_attn", dtype=dtype)
        self.cpe2 = depthwise_conv2d(3, name=f"{n}_cpe2", dtype=dtype)
        self.norm2 = davit_layer_norm(f"{n}_norm2", dtype=dtype)
        self.fc1 = dense(int(self.mlp_ratio * self.dim), name=f"{n}_fc1", dtype=dtype)
        self.fc2 = dense(self.dim, name=f"{n}_fc2", dtype=dtype)
        self.build_chain(hwc, self.cpe1, self.norm1, self.attn)
        self.build_chain(hwc, self.cpe2, self.norm2, self.fc1, self.fc2)
        super().build(input_shape)

    def call(self, x, training=None):
        x = self.cpe1(self.to_channels_last(x), add_input=True)
        x = self.add_branch(x, self.attn(self.norm1(x)), training)
        x = self.cpe2(x, add_input=True)
        x = self.add_branch(x, self.fc2(gelu(self.fc1(self.norm2(x)))), training)
        return self.from_channels_last(x)

    def get_config(self):
        config = super().get_config()
        config.update(num_heads=self.num_heads, attention=self.attention, window_size=self.window_size)
        return config


@register
class DaViTDownsample(CompositeLayer):
    """LayerNorm + ``Conv2x2/2`` (odd sides padded at the bottom and right)."""

    def __init__(self, filters, **kwargs):
        super().__init__(**kwargs)
        checks.int_at_least("filters", filters, owner="DaViTDownsample")
        self.filters = filters

    def build(self, input_shape):
        self.norm = davit_layer_norm(f"{self.name}_norm", dtype=self.dtype_policy)
        # Keras' "same" at kernel 2 / stride 2 pads one zero after an odd side: timm's rule.
        self.conv = Conv2D(self.filters, 2, strides=2, padding="same", kernel_initializer=conv_initializer(),
                           data_format="channels_last", name=f"{self.name}_conv", dtype=self.dtype_policy)
        self.build_chain(input_shape, self.norm, self.conv)

    def call(self, x):
        return self.conv(self.norm(x))

    def compute_output_shape(self, input_shape):
        return self.conv.compute_output_shape(input_shape)

    def get_config(self):
        config = super().get_config()
        config.update(filters=self.filters)
        return config


class DaViTNetwork:
    """The pieces :func:`keras_hiri.backbones.pyramid.assemble` stacks. A
    stage's ``depth`` counts (spatial, channel) pairs, as DaViT's paper and
    timm do; no norm closes a stage; the head normalises the pooled features."""

    name = "davit"

    def __init__(self, widths, depths, heads, window_size=7, mlp_ratio=4):
        self.widths, self.depths, self.heads = tuple(widths), tuple(depths), tuple(heads)
        self.window_size, self.mlp_ratio = window_size, mlp_ratio

    def stem(self, name, dtype):
        return OverlapPatchEmbed(self.widths[0], 7, 4, name=name, dtype=dtype)  # Conv7x7/4 + LayerNorm(1e-5)

    def downsample(self, stage, name, dtype):
        return DaViTDownsample(self.widths[stage - 1], name=name, dtype=dtype)

    def stage_blocks(self, stage):
        return 2 * self.depths[stage - 1]

    def block(self, stage, index, drop_path, name, dtype):
        i = stage - 1
        return DualAttentionBlock(
            self.widths[i], self.heads[i], "window" if index % 2 == 0 else "channel", self.window_size,
            self.mlp_ratio, drop_path=drop_path, name=name, data_format="channels_last", dtype=dtype)

    def stage_norm(self, stage, name, dtype):
        return None

    def head_norm(self, name, dtype):
        return davit_layer_norm(name, dtype=dtype)
