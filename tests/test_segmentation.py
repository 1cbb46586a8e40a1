import keras
import numpy as np
import pytest

import keras_hiri
from keras_hiri.segmentation import HiriViTSegmenter
from tests.helpers import to_numpy
from tests.tiny import images, tiny_model

SHAPE = (64, 64, 3)


def test_logits_cover_the_input_and_one_fit_step_learns(tmp_path):
    model = HiriViTSegmenter(tiny_model(include_top=False, input_shape=SHAPE), 3)
    assert model.output.shape == (None, 64, 64, 3)
    x = images(2, SHAPE)
    masks = np.zeros((2, 64, 64), "int32")
    masks[:, :, 32:] = 2
    model.compile(optimizer=keras.optimizers.SGD(0.01),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=[keras.metrics.MeanIoU(3, sparse_y_pred=False)])
    before = to_numpy(model.get_layer("seg_classifier").kernel).copy()
    history = model.fit(x, masks, batch_size=2, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"]).all()
    assert 0.0 <= history.history["mean_io_u"][0] <= 1.0
    assert not np.array_equal(to_numpy(model.get_layer("seg_classifier").kernel), before)
    path = str(tmp_path / "seg.keras")
    model.save(path)
    restored = keras.saving.load_model(path)
    np.testing.assert_allclose(to_numpy(restored(x)), to_numpy(model(x)), atol=1e-5)


def test_odd_input_sizes_are_cropped_back_to_the_input():
    model = HiriViTSegmenter(tiny_model(include_top=False, input_shape=(72, 88, 3)), 2)
    assert model.output.shape == (None, 72, 88, 2)
    assert to_numpy(model(images(1, (72, 88, 3)))).shape == (1, 72, 88, 2)


def test_bad_backbones_and_classes_are_refused():
    with pytest.raises(ValueError, match="pyramid_outputs"):
        HiriViTSegmenter(keras.Sequential([keras.Input(SHAPE), keras.layers.Conv2D(3, 1)]), 3)
    with pytest.raises(ValueError, match="static input size"):
        HiriViTSegmenter(tiny_model(include_top=False, input_shape=(None, None, 3)), 3)
    with pytest.raises(ValueError, match="channels_last"):
        HiriViTSegmenter(tiny_model(include_top=False, input_shape=(3, 64, 64),
                                    data_format="channels_first"), 3)
    with pytest.raises(ValueError, match="num_classes must be a positive int.*0"):
        HiriViTSegmenter(tiny_model(include_top=False, input_shape=SHAPE), 0)


def test_keras_hub_backbone_works_too():
    hub = pytest.importorskip("keras_hub") and keras_hiri.HiriViTBackbone
    model = HiriViTSegmenter(hub("tiny", image_shape=SHAPE), 3)
    assert to_numpy(model(images(1, SHAPE))).shape == (1, 64, 64, 3)
