import keras
import numpy as np
import pytest

from keras_hiri import common
from tests.helpers import assert_layer_round_trip, to_numpy


def reference_ceil_avg_pool(x):
    """PyTorch avg_pool2d(2, 2, ceil_mode=True, count_include_pad=False), in numpy."""
    b, h, w, c = x.shape
    out = np.zeros((b, -(-h // 2), -(-w // 2), c), x.dtype)
    for i in range(out.shape[1]):
        for j in range(out.shape[2]):
            out[:, i, j] = x[:, 2 * i : 2 * i + 2, 2 * j : 2 * j + 2].mean(axis=(1, 2))
    return out


@pytest.mark.parametrize("shape", [(2, 6, 4, 3), (2, 7, 5, 3), (1, 1, 3, 2)])
def test_ceil_avg_pool_excludes_padding(shape):
    x = np.random.default_rng(0).normal(size=shape).astype("float32")
    got = to_numpy(common.avg_pool_2x2_ceil(keras.ops.convert_to_tensor(x)))
    np.testing.assert_allclose(got, reference_ceil_avg_pool(x), atol=1e-6)


@pytest.mark.parametrize("n", [6, 7])
def test_strided_conv_pads_symmetrically(n):
    """A stride-2 3x3 conv pads one pixel on every side (PyTorch padding=1)."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(1, n, n, 2)).astype("float32")
    conv = common.conv2d(3, 3, 2, use_bias=False)
    got = to_numpy(common.strided(conv, x))
    kernel = to_numpy(conv.kernel)
    padded = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    m = -(-n // 2)
    want = np.zeros((1, m, m, 3), "float32")
    for i in range(m):
        for j in range(m):
            patch = padded[0, 2 * i : 2 * i + 3, 2 * j : 2 * j + 3]
            want[0, i, j] = np.tensordot(patch, kernel, axes=3)
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, atol=1e-5)


def test_upsample_crops_to_odd_grid():
    like = np.zeros((1, 5, 3, 1), "float32")
    x = np.arange(6, dtype="float32").reshape(1, 3, 2, 1)
    got = to_numpy(common.upsample_2x_to(x, like))[0, ..., 0]
    np.testing.assert_array_equal(got, [[0, 0, 1], [0, 0, 1], [2, 2, 3], [2, 2, 3], [4, 4, 5]])


def test_drop_path_is_identity_in_inference_and_drops_whole_samples_in_training():
    layer = common.DropPath(0.5, seed=1)
    x = np.ones((64, 3, 3, 2), "float32")
    np.testing.assert_array_equal(to_numpy(layer(x, training=False)), x)
    y = to_numpy(layer(x, training=True))
    per_sample = y.reshape(64, -1)
    # Each sample is either dropped (all 0) or kept and rescaled by 1/keep (all 2).
    assert set(np.unique(per_sample)) <= {0.0, 2.0}
    assert all(len(np.unique(row)) == 1 for row in per_sample)
    assert 0 < (per_sample[:, 0] == 0).sum() < 64
    assert_layer_round_trip(layer, x, training=False)


@pytest.mark.parametrize("rate", [-0.1, 1.0])
def test_drop_path_rejects_bad_rate(rate):
    with pytest.raises(ValueError, match="rate"):
        common.DropPath(rate)


def test_halve_is_ceil():
    assert [common.halve(n) for n in (1, 2, 7, 8, None)] == [1, 1, 4, 4, None]
