import keras
import numpy as np
import pytest

import keras_hiri
from keras_hiri.tasks.segmentation import HiriViTSegmenter
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
    with pytest.raises(ValueError, match="num_classes must be an int >= 1. Received: num_classes=0"):
        HiriViTSegmenter(tiny_model(include_top=False, input_shape=SHAPE), 0)


def test_keras_hub_backbone_works_too():
    hub = pytest.importorskip("keras_hub") and keras_hiri.HiriViTBackbone
    model = HiriViTSegmenter(hub("tiny", image_shape=SHAPE), 3)
    assert to_numpy(model(images(1, SHAPE))).shape == (1, 64, 64, 3)


def _fits_one_step(segmenter, x, masks):
    segmenter.compile(optimizer=keras.optimizers.SGD(0.01),
                      loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    before = [to_numpy(w).copy() for w in segmenter.trainable_weights]
    history = segmenter.fit(x, masks, batch_size=2, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"]).all()
    moved = [not np.array_equal(to_numpy(w), b) for w, b in zip(segmenter.trainable_weights, before)]
    assert all(moved[:3]) and sum(moved) > len(moved) // 2  # the backbone's first layers too


def test_keras_hub_segformer_and_deeplabv3_heads_on_hiri_vit():
    """The wiring of keras-hub's own segmentation heads (README): SegFormer through
    segmentation.segformer_encoder, DeepLabV3 directly on pyramid_outputs."""
    keras_hub = pytest.importorskip("keras_hub")
    from keras_hiri.tasks.segmentation import segformer_encoder

    x = images(2, SHAPE)
    masks = np.zeros((2, 64, 64, 1), "int32")  # keras-hub's segmenters take (B, H, W, 1)
    masks[:, 32:] = 1
    backbone = tiny_model(include_top=False, input_shape=SHAPE)
    encoder = segformer_encoder(backbone)
    assert encoder.hidden_dims == [int(backbone.pyramid_outputs[k].shape[-1])
                                   for k in ("P2", "P3", "P4", "P5")]
    segformer = keras_hub.models.SegFormerImageSegmenter(
        keras_hub.models.SegFormerBackbone(image_encoder=encoder, projection_filters=32),
        num_classes=2)
    assert to_numpy(segformer(x)).shape == (2, 64, 64, 2)
    _fits_one_step(segformer, x, masks)

    deeplab = keras_hub.models.DeepLabV3ImageSegmenter(
        keras_hub.models.DeepLabV3Backbone(
            image_encoder=tiny_model(include_top=False, input_shape=SHAPE),
            spatial_pyramid_pooling_key="P5", low_level_feature_key="P2",
            upsampling_size=8, dilation_rates=[1, 2, 3], projection_filters=16),
        num_classes=2)
    assert to_numpy(deeplab(x)).shape == (2, 64, 64, 2)
    _fits_one_step(deeplab, x, masks)
    with pytest.raises(ValueError, match="channels_last"):
        segformer_encoder(tiny_model(include_top=False, input_shape=(3, 64, 64),
                                     data_format="channels_first"))
