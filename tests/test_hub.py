import importlib
import os
import sys

import keras
import numpy as np
import pytest

import keras_hiri
from keras_hiri.layers.composite import model_layers
from tests.helpers import to_numpy
from tests.tiny import images

keras_hub = pytest.importorskip("keras_hub")  # CI installs it ([dev])
hub = importlib.import_module("keras_hiri.tasks.hub")

PRESET = "tiny_skimage_patches_64"
SHAPE = (64, 64, 3)


@pytest.fixture(scope="module")
def preset_path(tmp_path_factory):
    return hub.preset_dir(PRESET, cache_dir=str(tmp_path_factory.mktemp("presets")))


def test_registry_preset_loads_through_keras_hubs_base_classes(preset_path):
    x = images(2, SHAPE)
    reference = keras_hiri.HiriViT("tiny", input_shape=SHAPE, classes=10,
                                   classifier_activation=None, weights=PRESET)
    classifier = keras_hub.models.ImageClassifier.from_preset(preset_path)
    assert isinstance(classifier, hub.HiriViTImageClassifier)
    np.testing.assert_allclose(to_numpy(classifier(x)), to_numpy(reference(x)), atol=1e-5)

    backbone = keras_hub.models.Backbone.from_preset(preset_path)
    assert isinstance(backbone, hub.HiriViTBackbone)
    assert sorted(backbone.pyramid_outputs) == ["P2", "P3", "P4", "P5", "P6"]
    levels = keras.Model(backbone.inputs, backbone.pyramid_outputs)(x)
    encoder = keras_hiri.HiriViT("tiny", input_shape=SHAPE, include_top=False, weights=PRESET)
    np.testing.assert_allclose(to_numpy(levels["P6"]), to_numpy(encoder(x)), atol=1e-5)
    for key, level in levels.items():
        stride = 2 ** int(key[1:])
        assert tuple(level.shape[1:3]) == (SHAPE[0] // stride, SHAPE[1] // stride)


def test_registry_name_is_a_preset_and_the_cache_is_hash_checked(preset_path):
    assert PRESET in hub.presets()
    cache = os.path.dirname(preset_path)
    assert hub.preset_dir(PRESET, cache_dir=cache) == preset_path  # reused, not rewritten
    with pytest.raises(ValueError, match="Unknown HIRI-ViT preset 'nope'.*tiny_skimage"):
        hub.preset_dir("nope")
    backbone = hub.HiriViTBackbone.from_preset(preset_path, load_weights=False)
    assert backbone.variant == "TINY"


def test_backbone_save_to_preset_round_trip_and_dtype(tmp_path):
    backbone = hub.HiriViTBackbone("tiny", image_shape=SHAPE, dtype="mixed_bfloat16")
    policies = {layer.dtype_policy.name for layer in model_layers(backbone)
                if not isinstance(layer, keras.layers.InputLayer)}
    assert policies == {"mixed_bfloat16"}
    backbone = hub.HiriViTBackbone("tiny", image_shape=SHAPE)
    backbone.save_to_preset(str(tmp_path / "bb"))
    restored = keras_hub.models.Backbone.from_preset(str(tmp_path / "bb"))
    x = images(1, SHAPE)
    np.testing.assert_array_equal(to_numpy(restored(x)), to_numpy(backbone(x)))
    assert restored.get_config() == backbone.get_config()


def test_pinned_grids_with_non_power_of_two_strides_are_refused():
    with pytest.raises(ValueError, match=r"strides \(4, 8, 8, 16, 32\).*pin_late_grids=False"):
        hub.HiriViTBackbone("tiny", image_shape=(224, 224, 3), pin_late_grids=True)
    pinned = hub.HiriViTBackbone("tiny", image_shape=(448, 448, 3), pin_late_grids=True)
    assert sorted(pinned.pyramid_outputs) == ["P2", "P3", "P4", "P5", "P6"]


def test_classifier_task_fits_and_refuses_other_backbones(preset_path):
    classifier = hub.HiriViTImageClassifier.from_preset(PRESET)  # a registry name
    classifier.compile(optimizer=keras.optimizers.SGD(0.01))
    x, y = images(4, SHAPE), np.array([0, 1, 2, 3])
    history = classifier.fit(x, y, batch_size=4, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"]).all()
    with pytest.raises(ValueError, match="needs a keras_hiri.HiriViTBackbone"):
        hub.HiriViTImageClassifier(keras_hiri.HiriViT("tiny", include_top=False), 3)


def test_lazy_attributes_and_missing_extra_names_it(monkeypatch):
    assert keras_hiri.HiriViTBackbone is hub.HiriViTBackbone
    monkeypatch.setitem(sys.modules, "keras_hub", None)  # as if not installed
    monkeypatch.delitem(sys.modules, "keras_hiri.tasks.hub")
    with pytest.raises(ImportError, match=r'pip install "keras-hiri\[hub\]"'):
        importlib.import_module("keras_hiri.tasks.hub")


def test_segmenter_task_fits_and_round_trips_through_a_preset(tmp_path):
    backbone = hub.HiriViTBackbone("tiny", image_shape=SHAPE)
    segmenter = hub.HiriViTImageSegmenter(backbone, num_classes=3, fpn_channels=32,
                                          head_channels=16)
    segmenter.compile(optimizer=keras.optimizers.SGD(0.01),
                      loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    x, masks = images(2, SHAPE), np.zeros((2, 64, 64, 1), "int32")  # keras-hub: (B, H, W, 1)
    history = segmenter.fit(x, masks, batch_size=2, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"]).all()
    segmenter.save_to_preset(str(tmp_path / "seg"))
    restored = keras_hub.models.ImageSegmenter.from_preset(str(tmp_path / "seg"))
    assert isinstance(restored, hub.HiriViTImageSegmenter)
    np.testing.assert_allclose(to_numpy(restored(x)), to_numpy(segmenter(x)), atol=1e-5)
    with pytest.raises(ValueError, match="static image_shape"):
        hub.HiriViTImageSegmenter(hub.HiriViTBackbone("tiny"), 3)


def test_enable_lora_trains_only_the_attention_factors_and_round_trips(tmp_path):
    backbone = hub.HiriViTBackbone("tiny", image_shape=SHAPE)
    names = backbone.default_lora_layer_names()
    assert names and all(name.endswith(("_attn_q", "_attn_kv")) for name in names)
    assert len(names) == 2 * 3  # tiny: two Transformer blocks in stage 4, one in stage 5
    backbone.enable_lora(4)
    trainable = {w.path for w in backbone.trainable_weights}
    # Keras' LoRA freezes the kernel; the layer's bias stays trainable (as in keras-hub's models).
    assert trainable and all(path.endswith(("lora_kernel_a", "lora_kernel_b", "bias")) for path in trainable)
    assert len(trainable) == 3 * len(names)
    share = sum(int(np.prod(w.shape)) for w in backbone.trainable_weights) / backbone.count_params()
    assert 0 < share < 0.05
    classifier = hub.HiriViTImageClassifier(backbone, num_classes=3)
    classifier.compile(optimizer=keras.optimizers.SGD(0.1))
    x, y = images(4, SHAPE), np.array([0, 1, 2, 0])
    frozen = [to_numpy(w).copy() for w in backbone.non_trainable_weights]
    classifier.fit(x, y, batch_size=4, epochs=1, verbose=0)
    for w, before in zip(backbone.non_trainable_weights, frozen):
        if "moving_" not in w.path:  # BatchNorm statistics are not trained weights
            np.testing.assert_array_equal(to_numpy(w), before, err_msg=w.path)
    path = str(tmp_path / "lora.keras")
    classifier.save(path)
    restored = keras.saving.load_model(path)
    np.testing.assert_allclose(to_numpy(restored.predict(x, verbose=0)),
                               to_numpy(classifier.predict(x, verbose=0)), atol=1e-5)


def test_classifier_for_a_new_task_keeps_the_head_and_fine_tunes_with_lora(preset_path):
    reference = hub.HiriViTImageClassifier.from_preset(PRESET)
    classifier = hub.HiriViTImageClassifier.from_preset(PRESET, num_classes=4)
    assert classifier.get_layer("predictions").units == 4
    for new, old in ((classifier.get_layer("head"), reference.get_layer("head")),
                     (classifier.get_layer("head_norm"), reference.get_layer("head_norm")),
                     (classifier.backbone.get_layer("stem"), reference.backbone.get_layer("stem"))):
        for a, b in zip(new.weights, old.weights):
            np.testing.assert_array_equal(to_numpy(a), to_numpy(b), err_msg=a.path)
    classifier.enable_lora(4)
    groups = {w.path.split("/")[0] for w in classifier.trainable_weights}
    assert groups == {"head", "predictions", "stage4_block1", "stage4_block2", "stage5_block1"}
    share = sum(int(np.prod(w.shape)) for w in classifier.trainable_weights) / classifier.count_params()
    assert share < 0.05


def test_classifier_preset_predicts_from_raw_images_of_any_size(preset_path):
    """keras-hub's flow: ImageClassifier.from_preset(preset).predict(uint8 images of
    any size) gives the scores of keras_hiri.HiriViT on the converted images."""
    classifier = keras_hub.models.ImageClassifier.from_preset(preset_path)
    assert isinstance(classifier.preprocessor, hub.HiriViTImageClassifierPreprocessor)
    converter = classifier.preprocessor.image_converter
    assert converter.image_size == (64, 64) and converter.crop_pct == 0.875
    raw = np.random.default_rng(0).integers(0, 256, (3, 90, 120, 3)).astype("uint8")
    scores = to_numpy(classifier.predict(raw, verbose=0))
    resized = to_numpy(converter(raw))
    assert resized.shape == (3, 64, 64, 3) and resized.max() > 1.5  # [0, 255]: the model normalises
    reference = keras_hiri.HiriViT("tiny", input_shape=SHAPE, classes=10, classifier_activation=None,
                                   weights=PRESET)
    np.testing.assert_allclose(scores, to_numpy(reference(resized)), atol=1e-4)


def test_converter_crops_as_the_recipe_evaluates():
    tf = pytest.importorskip("tensorflow")
    from keras_hiri.training import augmentation, data

    photos, _, _ = data.photo_patches("validation", patch_size=96, per_class=1)
    image = photos[3][:, :80]  # 96 x 80: not square
    converter = hub.HiriViTImageConverter(image_size=(64, 64))
    mine = to_numpy(converter(image[None]))[0]
    recipe = augmentation.eval_transform(tf.constant(image), (64, 64)).numpy()
    assert np.abs(mine - recipe).mean() < 4.0  # of 255: the same crop, resampled in another order
    with pytest.raises(ValueError, match="takes no scale"):
        hub.HiriViTImageConverter(image_size=(64, 64), scale=1 / 255)
    with pytest.raises(ValueError, match=r"crop_pct must be in \(0, 1\]"):
        hub.HiriViTImageConverter(image_size=(64, 64), crop_pct=0)
    revived = hub.HiriViTImageConverter.from_config(converter.get_config())
    assert (revived.image_size, revived.crop_pct) == ((64, 64), 0.875)


def test_segmenter_preprocessor_resizes_images_and_masks_alike():
    converter = hub.HiriViTImageConverter(image_size=(64, 64), crop_pct=1.0)
    preprocessor = hub.HiriViTImageSegmenterPreprocessor(converter)
    assert hub.HiriViTImageSegmenter.preprocessor_cls is hub.HiriViTImageSegmenterPreprocessor
    images_, masks = images(2, (80, 96, 3)), np.zeros((2, 80, 96, 1), "int32")
    masks[:, :, 48:] = 2  # the right half
    x, y = preprocessor(images_, masks)
    assert tuple(x.shape) == (2, 64, 64, 3) and tuple(y.shape) == (2, 64, 64, 1)
    y = to_numpy(y)
    assert set(np.unique(y)) == {0, 2}  # nearest-neighbour: no blended labels
    assert (y[:, :, :30] == 0).all() and (y[:, :, 34:] == 2).all()  # the central square, halves kept
