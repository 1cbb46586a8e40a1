"""Quantized HIRI-ViT (``model.quantize``) saves, loads and serves."""

import keras
import numpy as np
import pytest

from tests.helpers import infer
from tests.tiny import images, randomize_batchnorm_statistics, tiny_model


# Largest output error allowed, relative to the output's scale: int8 keeps
# about 8 bits per weight, float8 (e4m3) 3 mantissa bits.
TOLERANCE = {"int8": 0.05, "float8": 0.15}


@pytest.mark.parametrize("mode", ["int8", "float8"])
def test_quantized_model_round_trips_through_keras_file(tmp_path, mode):
    model = tiny_model(classifier_activation=None)
    randomize_batchnorm_statistics(model)
    x = images()
    reference = infer(model, x)
    model.quantize(mode)
    quantized = [layer for layer in _all(model) if layer.quantization_mode == mode]
    assert len(quantized) >= 20  # every Dense inside the blocks and the head
    out = infer(model, x)
    scale = np.abs(reference).max()
    assert np.abs(out - reference).max() <= TOLERANCE[mode] * scale, "far from the float model"
    assert np.abs(out - reference).max() > 0, "quantize changed nothing"
    path = str(tmp_path / f"{mode}.keras")
    model.save(path)
    revived = keras.saving.load_model(path)
    revived_quantized = [layer for layer in _all(revived) if layer.quantization_mode == mode]
    assert [layer.path for layer in revived_quantized] == [layer.path for layer in quantized]
    np.testing.assert_allclose(infer(revived, x), out, rtol=1e-6, atol=1e-6)
    # And its config round-trips with the quantized policies in it.
    again = revived.__class__.from_config(revived.get_config())
    assert sum(layer.quantization_mode == mode for layer in _all(again)) == len(quantized)


def _all(model):
    from keras_hiri.layers.composite import model_layers

    return list(model_layers(model))
