"""Classification head: one class-attention block, as in Dual-ViT / Wave-ViT.

The paper does not describe its head; ``docs/DESIGN.md`` (ambiguity 1) shows
that only this head reaches Table II's parameter counts. The class token is
the mean of the stage-5 tokens; it attends over ``[cls; tokens]`` and passes a
plain FFN. The builder then applies ``LayerNorm`` and the linear classifier.
"""

from keras import ops

from keras_hiri import checks
from keras_hiri.layers import register
from keras_hiri.layers.activation import gelu
from keras_hiri.layers.composite import CompositeLayer
from keras_hiri.layers.conv import dense
from keras_hiri.layers.norm import layer_norm
from keras_hiri.layers.blocks import MultiHeadSelfAttention, to_tokens


@register
class ClassAttentionHead(CompositeLayer):
    """``(B, H, W, C)`` stage-5 map -> ``(B, C)`` pooled class token.

    ``cls = mean(T)``; ``cls += Attn(q=LN1(cls), kv=LN1([cls; T]))``;
    ``cls += FFN(LN2(cls))`` with ``FFN = FC(C -> E*C), GELU, FC(E*C -> C)``.
    """

    def __init__(self, dim, num_heads, mlp_ratio, **kwargs):
        super().__init__(**kwargs)
        checks.heads(dim, num_heads, owner="ClassAttentionHead")
        checks.number_in("mlp_ratio", mlp_ratio, low_open=True, owner="ClassAttentionHead")
        self.dim = dim
        self.num_heads = num_heads
        self.mlp_ratio = mlp_ratio

    def build(self, input_shape):
        n, dim = self.name, self.dim
        self.norm1 = layer_norm(f"{n}_norm1", dtype=self.dtype_policy)
        self.attn = MultiHeadSelfAttention(dim, self.num_heads, name=f"{n}_attn", dtype=self.dtype_policy)
        self.norm2 = layer_norm(f"{n}_norm2", dtype=self.dtype_policy)
        self.fc1 = dense(int(self.mlp_ratio * dim), name=f"{n}_fc1", dtype=self.dtype_policy)
        self.fc2 = dense(dim, name=f"{n}_fc2", dtype=self.dtype_policy)
        b, h, w, c = input_shape
        sequence = (b, None if None in (h, w) else h * w + 1, c)  # [cls; tokens]
        self.norm1.build(sequence)
        self.attn.build((b, 1, c), sequence)
        self.build_chain((b, 1, c), self.norm2, self.fc1, self.fc2)

    def call(self, x, training=None):
        tokens = to_tokens(x)
        cls = ops.mean(tokens, axis=1, keepdims=True)
        seq = self.norm1(ops.concatenate([cls, tokens], axis=1))
        cls = cls + self.attn(seq[:, :1], context=seq)
        cls = cls + self.fc2(gelu(self.fc1(self.norm2(cls))))
        return cls[:, 0]

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.dim)

    def get_config(self):
        config = super().get_config()
        config.update(dim=self.dim, num_heads=self.num_heads, mlp_ratio=self.mlp_ratio)
        return config
