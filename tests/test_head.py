import numpy as np
import pytest

from keras_hiri.layers.head import ClassAttentionHead
from tests.helpers import assert_layer_round_trip, to_numpy


def test_class_attention_head_pools_any_grid():
    layer = ClassAttentionHead(8, 2, 3)
    for grid in [(2, 2), (3, 5)]:
        x = np.random.default_rng(0).normal(size=(2, *grid, 8)).astype("float32")
        assert to_numpy(layer(x)).shape == (2, 8)
    assert_layer_round_trip(layer, x)


def test_class_token_is_permutation_invariant_over_positions():
    """Mean query + attention over a set: shuffling the tokens changes nothing."""
    layer = ClassAttentionHead(8, 2, 2)
    x = np.random.default_rng(0).normal(size=(1, 3, 4, 8)).astype("float32")
    perm = np.random.default_rng(1).permutation(12)
    shuffled = x.reshape(1, 12, 8)[:, perm].reshape(1, 3, 4, 8)
    np.testing.assert_allclose(to_numpy(layer(x)), to_numpy(layer(shuffled)), atol=1e-5)


def test_bad_sizes_raise_at_construction():
    with pytest.raises(ValueError, match="ClassAttentionHead: dim must be divisible by num_heads"):
        ClassAttentionHead(10, num_heads=3, mlp_ratio=4)
    with pytest.raises(ValueError, match="ClassAttentionHead: mlp_ratio must be a number > 0"):
        ClassAttentionHead(8, num_heads=2, mlp_ratio=0)
