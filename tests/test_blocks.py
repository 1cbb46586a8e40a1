import keras
import numpy as np
import pytest

from keras_hiri.layers import blocks
from tests.helpers import assert_layer_round_trip, to_numpy


def _x(shape, seed=0):
    return np.random.default_rng(seed).normal(size=shape).astype("float32")


@pytest.mark.parametrize(
    "layer",
    [
        lambda: blocks.HRBlock(8, mlp_ratio=2, drop_path=0.1),
        lambda: blocks.CFFNBlock(8, mlp_ratio=3),
        lambda: blocks.TransformerBlock(8, num_heads=2, mlp_ratio=2, drop_path=0.1),
        lambda: blocks.CFFN(8, 2),
    ],
    ids=["hr", "cffn_block", "transformer", "cffn"],
)
@pytest.mark.parametrize("grid", [(6, 6), (7, 5)])
def test_block_keeps_shape_and_round_trips(layer, grid):
    layer = layer()
    x = _x((2, *grid, 8))
    out = assert_layer_round_trip(layer, x)
    assert out.shape == x.shape
    assert layer.compute_output_shape(x.shape) == x.shape


def test_drop_path_runs_in_training_only_and_drops_whole_samples(monkeypatch):
    layer = blocks.CFFNBlock(8, mlp_ratio=2, drop_path=0.5)
    x = _x((32, 4, 4, 8))
    layer(x)  # builds
    calls = []
    drop_call = layer.drop_path.call
    monkeypatch.setattr(layer.drop_path, "call", lambda *a, **k: calls.append(k) or drop_call(*a, **k))
    inference = to_numpy(layer(x, training=False))
    np.testing.assert_array_equal(to_numpy(layer(x, training=False)), inference)
    assert calls == []  # the identity is not called outside training
    trained = to_numpy(layer(x, training=True))
    assert len(calls) == 1
    dropped = np.all(trained == x, axis=(1, 2, 3))
    assert 0 < dropped.sum() < len(x)  # whole samples keep only the shortcut
    assert not np.any(np.all(inference == x, axis=(1, 2, 3)))


def test_attention_matches_numpy_reference():
    layer = blocks.MultiHeadSelfAttention(8, 2)
    x = _x((2, 5, 8))
    got = to_numpy(layer(x))
    q = x @ to_numpy(layer.q.kernel) + to_numpy(layer.q.bias)
    kv = x @ to_numpy(layer.kv.kernel) + to_numpy(layer.kv.bias)
    k, v = kv[..., :8], kv[..., 8:]
    out = np.zeros_like(q)
    for h in range(2):
        s = slice(4 * h, 4 * h + 4)
        logits = q[..., s] @ k[..., s].transpose(0, 2, 1) / np.sqrt(4)
        a = np.exp(logits - logits.max(-1, keepdims=True))
        a /= a.sum(-1, keepdims=True)
        out[..., s] = a @ v[..., s]
    want = out @ to_numpy(layer.proj.kernel) + to_numpy(layer.proj.bias)
    np.testing.assert_allclose(got, want, atol=1e-5)
    assert_layer_round_trip(layer, x)


def test_attention_with_context_uses_context_as_keys():
    layer = blocks.MultiHeadSelfAttention(8, 2)
    q, ctx = _x((2, 1, 8)), _x((2, 6, 8), seed=1)
    assert layer(q, context=ctx).shape == (2, 1, 8)
    # One query over one key returns that key's value projection.
    single = to_numpy(layer(q, context=q))
    v = to_numpy(layer.kv(q))[..., 8:]
    np.testing.assert_allclose(single, to_numpy(layer.proj(v)), atol=1e-5)


def test_attention_rejects_indivisible_heads():
    with pytest.raises(ValueError, match="divisible"):
        blocks.MultiHeadSelfAttention(10, 3)


def test_hr_block_low_resolution_branch_runs_on_half_grid():
    layer = blocks.HRBlock(4, mlp_ratio=2)
    layer.build((1, 7, 9, 4))  # sub-layers are created in build()
    seen = {}
    original = layer.lo_fc1.call

    def spy(x):
        seen["shape"] = tuple(x.shape)
        return original(x)

    object.__setattr__(layer.lo_fc1, "call", spy)
    layer(_x((1, 7, 9, 4)))
    assert seen["shape"] == (1, 4, 5, 4)


def test_cffn_equation_3():
    layer = blocks.CFFN(4, 2)
    x = _x((1, 5, 5, 4))
    got = to_numpy(layer(x))
    z = to_numpy(keras.ops.gelu(layer.fc1(x), approximate=False))
    want = to_numpy(layer.fc2(z + to_numpy(layer.dw(z))))
    np.testing.assert_allclose(got, want, atol=1e-5)


@pytest.mark.backend_independent
@pytest.mark.parametrize("make,message", [
    (lambda: blocks.HRBlock(0), "HRBlock: dim must be an int >= 1. Received: dim=0"),
    (lambda: blocks.HRBlock(8.0), "HRBlock: dim must be an int >= 1"),
    (lambda: blocks.CFFNBlock(8, mlp_ratio=0), "CFFNBlock: mlp_ratio must be a number > 0"),
    (lambda: blocks.CFFNBlock(8, drop_path=1.0), r"CFFNBlock: drop_path must be in \[0, 1\)"),
    (lambda: blocks.CFFN(8, -1), "CFFN: mlp_ratio must be a number > 0"),
    (lambda: blocks.TransformerBlock(10, num_heads=3), "TransformerBlock: dim must be divisible by num_heads"),
    (lambda: blocks.TransformerBlock(8, num_heads=0), "TransformerBlock: num_heads must be an int >= 1"),
    (lambda: blocks.MultiHeadSelfAttention(8, num_heads=3), "dim must be divisible by num_heads"),
], ids=["hr-dim", "hr-float-dim", "cffn-block-ratio", "drop-path", "cffn-ratio", "heads-divide",
        "heads-zero", "mhsa-heads"])
def test_bad_sizes_raise_at_construction(make, message):
    with pytest.raises(ValueError, match=message):
        make()
