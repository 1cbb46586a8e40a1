"""Stage blocks: HR block (stages 1-2), CFFN block (stage 3) and Transformer
block (stages 4-5), plus the CFFN and self-attention they are built from.

Every block takes and returns a channels-last map ``(B, H, W, C)``; Transformer
blocks flatten it to tokens internally. Each is residual and pre-norm.
"""

from keras import ops

from keras_hiri import checks
from keras_hiri import ops as hiri_ops
from keras_hiri.layers import register
from keras_hiri.layers.activation import gelu
from keras_hiri.layers.composite import CompositeLayer, SpatialLayer
from keras_hiri.layers.conv import dense, depthwise_conv2d
from keras_hiri.layers.drop_path import DropPath
from keras_hiri.layers.norm import batch_norm, layer_norm
from keras_hiri.layers.resample import add_upsampled_2x


class ResidualBlock(SpatialLayer):
    """Shared pieces of the residual blocks: width, ratio, drop-path, config."""

    def __init__(self, dim, mlp_ratio, drop_path=0.0, **kwargs):
        super().__init__(**kwargs)
        owner = type(self).__name__
        checks.int_at_least("dim", dim, owner=owner)
        checks.number_in("mlp_ratio", mlp_ratio, low_open=True, owner=owner)
        checks.number_in("drop_path", drop_path, 0, 1, high_open=True, owner=owner)
        self.dim = dim
        self.mlp_ratio = mlp_ratio
        self.drop_path_rate = float(drop_path)

    def build(self, input_shape):
        # Subclasses create their own sub-layers first, then call this.
        input_shape = self.channels_last_shape(input_shape)
        self.drop_path = DropPath(self.drop_path_rate, name=f"{self.name}_drop_path",
                                         dtype=self.dtype_policy)
        self.drop_path.build(input_shape)  # no weights; its branch has the block's shape

    def add_branch(self, x, branch, training=None):
        """``x + DropPath(branch)``.

        DropPath is the identity outside training and at rate 0, and there it
        is not called: every Keras layer call costs Python time (about 0.3 ms
        on PyTorch eager on a 2-core CPU), and these identities were
        32 of HIRI-ViT-S's 274 layer calls per forward pass.
        """
        if self.drop_path.drops(training):
            branch = self.drop_path(branch, training=training)
        return x + branch

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(dim=self.dim, mlp_ratio=self.mlp_ratio, drop_path=self.drop_path_rate)
        return config


@register
class HRBlock(ResidualBlock):
    """High Resolution block (Sec. 4.2, Fig. 4).

    ``y = BN(x)``; high-res branch: depthwise ``3x3`` on the full grid;
    low-res branch: depthwise ``3x3`` stride 2 + BN, then ``FC(C -> E*C)``, GELU,
    ``FC(E*C -> C)`` on the half grid, upsampled back by repetition. The two are
    summed and added to ``x``.

    Args:
        dim: width ``C`` (the input's and the output's).
        mlp_ratio: ``E``.
        drop_path: stochastic-depth rate of the residual branch.
        data_format: ``"channels_last"`` / ``"channels_first"`` layout of the
            input and output (``None``: ``keras.config.image_data_format()``).
    """

    def __init__(self, dim, mlp_ratio=4, drop_path=0.0, **kwargs):
        super().__init__(dim, mlp_ratio, drop_path, **kwargs)

    def build(self, input_shape):
        hwc = self.channels_last_shape(input_shape)
        n, dim = self.name, self.dim
        self.norm = batch_norm(f"{n}_norm", dtype=self.dtype_policy)
        self.hi_dw = depthwise_conv2d(3, name=f"{n}_hi_dw", dtype=self.dtype_policy)
        self.lo_dw, self.lo_bn = self.conv_bn("lo_dw", "lo_bn", None, 3, 2)
        self.lo_fc1 = dense(int(self.mlp_ratio * dim), name=f"{n}_lo_fc1", dtype=self.dtype_policy)
        self.lo_fc2 = dense(dim, name=f"{n}_lo_fc2", dtype=self.dtype_policy)
        self.build_chain(hwc, self.norm, self.hi_dw)
        self.build_chain(hwc, self.lo_dw, self.lo_bn, self.lo_fc1, self.lo_fc2)
        super().build(input_shape)

    def call(self, x, training=None):
        x = self.to_channels_last(x)
        y = self.norm(x, training=training)
        hi = self.hi_dw(y)
        lo = self.lo_bn(self.lo_dw(y), training=training)
        lo = self.lo_fc2(gelu(self.lo_fc1(lo)))
        return self.from_channels_last(self.add_branch(x, add_upsampled_2x(hi, lo), training))

    def bn_folds(self):
        # ``norm`` comes *before* the zero-padded depthwise convs: folding it
        # forward would change the border pixels, so it stays.
        return [(("lo_dw",), "lo_bn")]


@register
class CFFN(CompositeLayer):
    """Convolutional feed-forward network, Eq. (3).

    ``z = GELU(FC(x))``; ``out = FC(DWConv3x3(z) + z)`` on a ``(B, H, W, C)`` map.
    """

    def __init__(self, dim, mlp_ratio, **kwargs):
        super().__init__(**kwargs)
        checks.int_at_least("dim", dim, owner=type(self).__name__)
        checks.number_in("mlp_ratio", mlp_ratio, low_open=True, owner=type(self).__name__)
        self.dim = dim
        self.mlp_ratio = mlp_ratio

    def build(self, input_shape):
        n = self.name
        self.fc1 = dense(int(self.mlp_ratio * self.dim), name=f"{n}_fc1", dtype=self.dtype_policy)
        self.dw = depthwise_conv2d(3, name=f"{n}_dw", dtype=self.dtype_policy)
        self.fc2 = dense(self.dim, name=f"{n}_fc2", dtype=self.dtype_policy)
        self.build_chain(input_shape, self.fc1, self.dw, self.fc2)

    def call(self, x, training=None):
        z = gelu(self.fc1(x))
        return self.fc2(self.dw(z, add_input=True))  # DWConv3x3(z) + z

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(dim=self.dim, mlp_ratio=self.mlp_ratio)
        return config


@register
class CFFNBlock(ResidualBlock):
    """Stage-3 block: ``x + CFFN(BN(x))`` (Sec. 4.4: BN instead of LN)."""

    def __init__(self, dim, mlp_ratio=4, drop_path=0.0, **kwargs):
        super().__init__(dim, mlp_ratio, drop_path, **kwargs)

    def build(self, input_shape):
        self.norm = batch_norm(f"{self.name}_norm", dtype=self.dtype_policy)
        self.cffn = CFFN(self.dim, self.mlp_ratio, name=f"{self.name}_cffn", dtype=self.dtype_policy)
        self.build_chain(self.channels_last_shape(input_shape), self.norm, self.cffn)
        super().build(input_shape)

    def call(self, x, training=None):
        x = self.to_channels_last(x)
        y = self.cffn(self.norm(x, training=training))
        return self.from_channels_last(self.add_branch(x, y, training))


@register
class MultiHeadSelfAttention(CompositeLayer):
    """Global multi-head self-attention, Eq. (1), over a ``(B, N, C)`` sequence.

    ``q = FC(C -> C)``, ``kv = FC(C -> 2C)``, ``proj = FC(C -> C)``, all with
    bias; no spatial reduction, no position bias (as in Dual-/Wave-ViT).
    """

    def __init__(self, dim, num_heads, **kwargs):
        super().__init__(**kwargs)
        checks.heads(dim, num_heads, owner="MultiHeadSelfAttention")
        self.dim = dim
        self.num_heads = num_heads

    def build(self, x_shape, context_shape=None):
        n, dim = self.name, self.dim
        self.q = dense(dim, name=f"{n}_q", dtype=self.dtype_policy)
        self.kv = dense(2 * dim, name=f"{n}_kv", dtype=self.dtype_policy)
        self.proj = dense(dim, name=f"{n}_proj", dtype=self.dtype_policy)
        context_shape = x_shape if context_shape is None else context_shape
        self.q.build(x_shape)
        self.kv.build(context_shape)
        self.proj.build((*x_shape[:-1], self.dim))
        self.fused_attention = hiri_ops.use_fused_attention(self.compute_dtype)

    def attend(self, q_in, kv_in):
        """Attention of the ``q_in`` tokens over the ``kv_in`` tokens.

        Softmax scale is ``head_dim ** -0.5``. The profiler counts the two
        attention matmuls (``Q K^T`` and ``A V``) from this method's arguments.
        """
        q = split_heads(self.q(q_in), self.num_heads)
        k, v = ops.split(self.kv(kv_in), 2, axis=-1)
        k, v = split_heads(k, self.num_heads), split_heads(v, self.num_heads)
        out = hiri_ops.attention(q, k, v, self.fused_attention)
        shape = ops.shape(out)
        return self.proj(ops.reshape(out, (shape[0], shape[1], self.dim)))

    def call(self, x, context=None):
        """Self-attention of ``x``; with ``context``, ``x`` attends over it."""
        return self.attend(x, x if context is None else context)

    def compute_output_shape(self, x_shape, context_shape=None):
        return x_shape

    def get_config(self):
        config = super().get_config()
        config.update(dim=self.dim, num_heads=self.num_heads)
        return config


def split_heads(x, num_heads):
    """``(B, N, C) -> (B, N, heads, C / heads)``."""
    shape = ops.shape(x)
    return ops.reshape(x, (shape[0], shape[1], num_heads, x.shape[-1] // num_heads))


def to_tokens(x):
    """``(B, H, W, C) -> (B, H*W, C)``."""
    shape = ops.shape(x)
    return ops.reshape(x, (shape[0], shape[1] * shape[2], shape[3]))


@register
class TransformerBlock(ResidualBlock):
    """Stages 4-5: ``x + MHA(LN(x))`` then ``x + CFFN(LN(x))``."""

    def __init__(self, dim, num_heads, mlp_ratio=4, drop_path=0.0, **kwargs):
        super().__init__(dim, mlp_ratio, drop_path, **kwargs)
        checks.heads(dim, num_heads, owner="TransformerBlock")
        self.num_heads = num_heads

    def build(self, input_shape):
        n = self.name
        self.norm1 = layer_norm(f"{n}_norm1", dtype=self.dtype_policy)
        self.attn = MultiHeadSelfAttention(self.dim, self.num_heads, name=f"{n}_attn", dtype=self.dtype_policy)
        self.norm2 = layer_norm(f"{n}_norm2", dtype=self.dtype_policy)
        self.cffn = CFFN(self.dim, self.mlp_ratio, name=f"{n}_cffn", dtype=self.dtype_policy)
        hwc = self.channels_last_shape(input_shape)
        b, h, w, c = hwc
        self.build_chain(hwc, self.norm1)
        self.attn.build((b, None if None in (h, w) else h * w, c))
        self.build_chain(hwc, self.norm2, self.cffn)
        super().build(input_shape)

    def call(self, x, training=None):
        x = self.to_channels_last(x)
        y = self.attn(to_tokens(self.norm1(x)))
        x = self.add_branch(x, ops.reshape(y, ops.shape(x)), training)
        return self.from_channels_last(self.add_branch(x, self.cffn(self.norm2(x)), training))

    def get_config(self):
        config = super().get_config()
        config.update(num_heads=self.num_heads)
        return config


BLOCKS = {"hr": HRBlock, "cffn": CFFNBlock, "transformer": TransformerBlock}
