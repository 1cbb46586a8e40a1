"""fold_batchnorm: every BN after a conv disappears, outputs stay equal."""

import keras
import numpy as np
import pytest

import keras_hiri
from keras_hiri import folding
from keras_hiri.layers.composite import model_layers
from tests.helpers import to_numpy
from tests.tiny import TINY, TINY_CLASSES, images, randomize_for_folding, tiny_model


def _all_outputs(model, x):
    """Every stage output and the logits: the fold must hold all the way."""
    probe = keras.Model(model.inputs, [*model.pyramid_outputs.values(), model.output])
    return [to_numpy(y) for y in probe(x, training=False)]


def _assert_same(model, folded, x):
    for a, b in zip(_all_outputs(model, x), _all_outputs(folded, x)):
        scale = max(1.0, float(np.abs(a).max()))
        assert np.abs(a - b).max() <= 1e-5 * scale, (np.abs(a - b).max(), scale)


def _batchnorms(model):
    return [
        layer for layer in model_layers(model)
        if isinstance(layer, keras.layers.BatchNormalization)
    ]


def test_folded_model_computes_the_same_outputs():
    model = randomize_for_folding(tiny_model(classifier_activation=None))
    folded = keras_hiri.fold_batchnorm(model)
    assert type(folded) is type(model)
    _assert_same(model, folded, images(2))


def test_only_the_batchnorms_in_front_of_convolutions_remain():
    model = tiny_model()
    folded = keras_hiri.fold_batchnorm(model)
    # HR-stem 5 + per HR block 1 + IRDS-a 3 each + IRDS-b 1 each are folded.
    hr_blocks = sum(d for d, t in zip(TINY.depths, TINY.block_types) if t == "hr")
    assert len(_batchnorms(model)) - len(_batchnorms(folded)) == 5 + hr_blocks + 2 * 3 + 2 * 1
    remaining = {layer.name for layer in _batchnorms(folded)}
    # The blocks' pre-norms and the stage norms stay: they precede padded convs.
    assert "stage1_block1_norm" in remaining and "stage3_norm" in remaining
    assert not any("_bn" in name for name in remaining), remaining
    assert folding.foldable_layers(folded) == []
    # Folding drops parameters: the BN statistics, plus the new conv biases.
    assert folded.count_params() < model.count_params()


@pytest.mark.parametrize(
    "options",
    [
        {"stem": "conv", "downsample": "plain"},
        {"stem": "vit", "block_types": ("hr", "hr", "hr", "hr", "hr")},
        {"block_types": ("hr", "hr", "cffn", "cffn", "cffn")},  # IRDS-b with a BN norm
    ],
    ids=["conv-stem-plain", "vit-stem-bn", "irds-b-bn"],
)
def test_ablation_layouts_fold_exactly(options):
    model = randomize_for_folding(tiny_model(classifier_activation=None, **options))
    folded = keras_hiri.fold_batchnorm(model)
    _assert_same(model, folded, images(2, seed=3))
    assert not any(
        "_bn" in layer.name or layer.name.endswith("downsample_norm") or layer.name == "stem_norm"
        for layer in _batchnorms(folded)
    )


def test_source_model_is_unchanged_and_folded_model_round_trips(tmp_path):
    model = randomize_for_folding(tiny_model(classifier_activation=None))
    before = [to_numpy(w).copy() for w in model.weights]
    folded = keras_hiri.fold_batchnorm(model)
    for b, w in zip(before, model.weights):
        np.testing.assert_array_equal(b, to_numpy(w))
    path = str(tmp_path / "folded.keras")
    folded.save(path)
    revived = keras.saving.load_model(path)
    assert revived.get_layer("stem").get_config()["fold_bn"] is True
    x = images(1, seed=5)
    np.testing.assert_allclose(to_numpy(revived(x)), to_numpy(folded(x)), atol=1e-6)


def test_layer_config_carries_the_flag():
    stem = keras_hiri.HRStem(8, fold_bn=True, name="s")
    assert stem.get_config()["fold_bn"] is True
    stem.build((1, 16, 16, 3))
    assert isinstance(stem.bn, keras.layers.Identity) and stem.conv.use_bias
    assert keras_hiri.HRStem.from_config(stem.get_config()).fold_bn


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="functional keras.Model"):
        keras_hiri.fold_batchnorm(keras_hiri.HRStem(8))

    class Subclassed(keras.Model):
        def __init__(self):
            super().__init__()
            self.stem = keras_hiri.HRStem(8)

        def call(self, x):
            return self.stem(x)

    with pytest.raises(ValueError, match="functional keras.Model"):
        keras_hiri.fold_batchnorm(Subclassed())
    folded = keras_hiri.fold_batchnorm(tiny_model(classes=TINY_CLASSES))
    with pytest.raises(ValueError, match="folded already"):
        keras_hiri.fold_batchnorm(folded)
    with pytest.raises(ValueError, match="no BatchNorm after a convolution"):
        keras_hiri.CFFN(8, 2, fold_bn=True)
