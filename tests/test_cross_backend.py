"""The same weights give the same outputs on every backend.

tests/data/tiny_reference.* were written by tests/data/make_reference.py on
TensorFlow (random weights, randomised BatchNorm statistics, odd non-square
input). Each backend's run loads the .weights.h5 and must reproduce the stored
logits within 1e-4 (float32) and every pyramid level within 1e-4 relative.
"""

import os

import keras
import numpy as np
import pytest

from tests.helpers import to_numpy
from tests.tiny import tiny_model

DATA = os.path.join(os.path.dirname(__file__), "data")


@pytest.fixture(scope="module")
def reference():
    return np.load(os.path.join(DATA, "tiny_reference.npz"))


def test_reference_was_made_elsewhere_or_here(reference):
    assert str(reference["backend"]) in ("tensorflow", "jax", "torch")
    assert np.abs(reference["logits"]).max() > 1.0  # a strict absolute tolerance


def test_logits_and_pyramid_match_reference(reference):
    model = tiny_model(classifier_activation=None)
    model.load_weights(os.path.join(DATA, "tiny_reference.weights.h5"))
    extractor = keras.Model(model.input, [model.output, *model.pyramid_outputs.values()])
    outputs = extractor(reference["images"].astype("float32"), training=False)
    logits = to_numpy(outputs[0])
    assert np.abs(logits - reference["logits"]).max() <= 1e-4
    for key, out in zip(model.pyramid_outputs, outputs[1:]):
        want = reference[key]
        scale = max(1.0, float(np.abs(want).max()))
        assert np.abs(to_numpy(out) - want).max() <= 1e-4 * scale, key
