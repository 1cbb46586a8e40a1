import numpy as np
import pytest

from keras_hiri.layers import stem
from tests.helpers import assert_layer_round_trip


@pytest.mark.parametrize("cls", [stem.HRStem, stem.ConvStem, stem.ViTStem])
@pytest.mark.parametrize("size", [(32, 32), (37, 50)])
def test_stem_reaches_quarter_grid(cls, size):
    layer = cls(8, name="stem")
    x = np.random.default_rng(0).normal(size=(2, *size, 3)).astype("float32")
    out = assert_layer_round_trip(layer, x, training=False)
    want = (2, -(-size[0] // 4), -(-size[1] // 4), 8)
    assert out.shape == want
    assert layer.compute_output_shape(x.shape) == want


def test_hr_stem_has_both_branches():
    layer = stem.HRStem(8, name="stem")
    layer(np.zeros((1, 16, 16, 3), "float32"))
    names = {w.path.split("/")[-2] for w in layer.trainable_weights}
    assert {"stem_hi_dw", "stem_hi_conv", "stem_lo_conv1", "stem_lo_conv2", "stem_lo_conv3"} <= names


@pytest.mark.parametrize("cls", [stem.HRStem, stem.ConvStem, stem.ViTStem])
def test_bad_width_raises_at_construction(cls):
    with pytest.raises(ValueError, match=f"{cls.__name__}: filters must be an int >= 1. Received: filters=0"):
        cls(0)
