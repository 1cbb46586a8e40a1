import numpy as np
import pytest

from keras_hiri.layers import downsampling
from tests.helpers import assert_layer_round_trip

LAYERS = [
    (downsampling.IRDSa, {}),
    (downsampling.IRDSb, {"norm": "ln"}),
    (downsampling.IRDSb, {"norm": "bn"}),
    (downsampling.PlainDownsample, {"norm": "bn"}),
]


@pytest.mark.parametrize("cls,kwargs", LAYERS)
@pytest.mark.parametrize("strides", [1, 2])
@pytest.mark.parametrize("grid", [(8, 8), (7, 5)])
def test_downsample_shapes_and_round_trip(cls, kwargs, strides, grid):
    layer = cls(12, strides, **kwargs)
    x = np.random.default_rng(0).normal(size=(2, *grid, 6)).astype("float32")
    out = assert_layer_round_trip(layer, x, training=False)
    want = grid if strides == 1 else tuple(-(-g // 2) for g in grid)
    assert out.shape == (2, *want, 12)
    assert layer.compute_output_shape(x.shape) == (2, *want, 12)


def test_irds_widths_follow_design():
    """IRDS-a expands to 2*Cout, IRDS-b to 3*Cout (docs/DESIGN.md)."""
    a = downsampling.IRDSa(10)
    a(np.zeros((1, 4, 4, 6), "float32"))
    assert a.conv1.kernel.shape == (3, 3, 6, 20)
    b = downsampling.IRDSb(10)
    b(np.zeros((1, 4, 4, 6), "float32"))
    assert b.conv1.kernel.shape == (1, 1, 6, 30)


def test_bad_stride():
    with pytest.raises(ValueError, match="strides"):
        downsampling.IRDSa(8, strides=3)


@pytest.mark.parametrize("make,message", [
    (lambda: downsampling.IRDSa(0), "IRDSa: filters must be an int >= 1. Received: filters=0"),
    (lambda: downsampling.IRDSb(16, expansion=1.5), "IRDSb: expansion must be an int >= 1"),
    (lambda: downsampling.PlainDownsample(-4), "PlainDownsample: filters must be an int >= 1"),
], ids=["irds-a", "irds-b-expansion", "plain"])
def test_bad_sizes_raise_at_construction(make, message):
    with pytest.raises(ValueError, match=message):
        make()
