"""CutMix / MixUp functions: label weights match the pixels, on every backend."""

import keras
import numpy as np
import pytest

from keras_hiri.training import mixing
from tests.helpers import to_numpy


@pytest.mark.parametrize("cutmix", [True, False])
def test_label_weight_is_the_share_of_own_pixels(cutmix):
    """Sample 0 (black) against sample 1 (white): its label weight equals the
    share of its own pixels (CutMix) or the blend factor (MixUp)."""
    images = np.stack([np.zeros((16, 16, 3)), np.full((16, 16, 3), 255.0)]).astype("float32")
    labels = np.eye(3, dtype="float32")[[0, 1]]
    seed = keras.random.SeedGenerator(5)
    lams = []
    for _ in range(8):
        mix = mixing.sample((16, 16), seed, mixup_alpha=0.0 if cutmix else 0.8,
                            cutmix_alpha=1.0 if cutmix else 0.0)
        out = to_numpy(mixing.mix_images(keras.ops.convert_to_tensor(images), mix))
        y = to_numpy(mixing.mix_labels(keras.ops.convert_to_tensor(labels), mix))
        own = 1.0 - out[0].mean() / 255.0
        assert y[0, 0] == pytest.approx(own, abs=1e-5)
        np.testing.assert_allclose(y.sum(-1), 1.0, atol=1e-6)
        lams.append(round(float(y[0, 0]), 4))
    assert len(set(lams)) > 3  # the draws vary


def test_mask_mean_is_lambda_on_any_grid():
    seed = keras.random.SeedGenerator(1)
    for _ in range(5):
        mix = mixing.sample((20, 12), seed, mixup_alpha=0.0, cutmix_alpha=1.0)
        lam = float(to_numpy(mix["lam"]))
        for grid in ((20, 12), (3, 2), (1, 1)):
            assert float(to_numpy(mixing.mask(mix, (20, 12), *grid)).mean()) == pytest.approx(
                lam, abs=1e-5)


def test_smoothing():
    y = np.eye(4, dtype="float32")[[2]]
    np.testing.assert_allclose(to_numpy(mixing.smooth(keras.ops.convert_to_tensor(y), 0.1)),
                               [[0.025, 0.025, 0.925, 0.025]], atol=1e-7)
