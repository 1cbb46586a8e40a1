"""The upgrade kit: the HR stem, HR block, IRDS-a/b and conv stem as layers of
their own (any size, either layout, config, saving), and the HIRI front."""

import os

import keras
import numpy as np
import pytest

import keras_hiri
from keras_hiri import backbones
from tests.helpers import assert_layer_round_trip, to_numpy

# (layer class, constructor arguments, input channels)
KIT = [
    (keras_hiri.HRStem, (16,), 3),
    (keras_hiri.ConvStem, (16,), 3),
    (keras_hiri.HRBlock, (12,), 12),
    (keras_hiri.IRDSa, (24,), 12),
    (keras_hiri.IRDSb, (24,), 12),
]
IDS = [cls.__name__ for cls, _, _ in KIT]


def _image(channels, height=37, width=22, batch=2):
    return np.random.default_rng(0).normal(size=(batch, height, width, channels)).astype("float32")


@pytest.mark.parametrize("cls, args, channels", KIT, ids=IDS)
def test_kit_layer_shapes_config_and_layouts(cls, args, channels):
    x = _image(channels)  # odd, non-square: the stride rule gives ceil(n / 2) per step
    last = cls(*args, data_format="channels_last")
    out = assert_layer_round_trip(last, x)
    assert out.shape == last.compute_output_shape(x.shape)
    assert last.get_config()["data_format"] == "channels_last"

    first = cls.from_config({**last.get_config(), "data_format": "channels_first"})
    x_first = np.transpose(x, (0, 3, 1, 2))
    first(x_first)
    first.set_weights(last.get_weights())
    out_first = to_numpy(first(x_first))
    assert out_first.shape == first.compute_output_shape(x_first.shape)
    np.testing.assert_allclose(np.transpose(out_first, (0, 2, 3, 1)), out, atol=1e-5)


@pytest.mark.parametrize("cls, args, channels", KIT, ids=IDS)
def test_kit_layer_in_a_functional_model_saves_as_keras(cls, args, channels, tmp_path):
    inputs = keras.Input((None, None, channels))  # any size: the grid is dynamic
    outputs = cls(*args, data_format="channels_last")(inputs)
    model = keras.Model(inputs, keras.layers.GlobalAveragePooling2D()(outputs))
    x = _image(channels, 29, 40)
    expected = to_numpy(model(x))
    path = os.path.join(tmp_path, "kit.keras")
    model.save(path)
    np.testing.assert_allclose(to_numpy(keras.saving.load_model(path)(x)), expected, atol=1e-5)


def test_kit_layers_follow_image_data_format_and_refuse_others():
    previous = keras.config.image_data_format()
    keras.config.set_image_data_format("channels_first")
    try:
        assert keras_hiri.HRBlock(8).data_format == "channels_first"
        # a config saved before the argument existed is channels-last
        old = {k: v for k, v in keras_hiri.HRBlock(8, name="old").get_config().items() if k != "data_format"}
        assert keras_hiri.HRBlock.from_config(old).data_format == "channels_last"
    finally:
        keras.config.set_image_data_format(previous)
    with pytest.raises(ValueError, match="data_format must be one of .*Received: data_format='nhwc'"):
        keras_hiri.IRDSa(8, data_format="nhwc")


def test_hiri_front_maps_twice_the_input_to_the_backbones_first_grid():
    inputs = keras.Input((96, 80, 3))
    upgrade = backbones.HiriUpgrade(filters=8, depth=2)
    stage0, out = backbones.hiri_front(inputs, 32, upgrade)
    assert tuple(stage0.shape) == (None, 24, 20, 8)  # S/2 of the plain input (48 x 40)
    assert tuple(out.shape) == (None, 12, 10, 32)  # S/4: where a stride-4 embedding of 48 x 40 lands
    model = keras.Model(inputs, out)
    names = [layer.name for layer in model.layers[1:]]
    assert names == ["stem", "stage0_block1", "stage0_block2", "stage0_norm", "stage1_downsample"]
    assert to_numpy(model(_image(3, 96, 80))).shape == (2, 12, 10, 32)


def test_hiri_upgrade_checks_its_numbers():
    with pytest.raises(ValueError, match="filters must be an int >= 1. Received: filters=0"):
        backbones.HiriUpgrade(filters=0)
    with pytest.raises(ValueError, match="depth"):
        backbones.HiriUpgrade(depth=-1)
    with pytest.raises(ValueError, match="one rate per HR block"):
        backbones.hiri_front(keras.Input((64, 64, 3)), 8, backbones.HiriUpgrade(8, 2), [0.1])
