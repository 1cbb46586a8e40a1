import os

import keras
import numpy as np
import pytest

import keras_hiri
from keras_hiri import builder, naming
from keras_hiri.layers.composite import model_layers
from tests.helpers import to_numpy
from tests.tiny import (
    TINY, TINY_CLASSES, TINY_INPUT_SHAPE, images, randomize_batchnorm_statistics, tiny_model,
)


@pytest.fixture
def no_build(monkeypatch):
    """Fails the test if any layer of the network gets built."""

    def forbidden(*args, **kwargs):
        raise AssertionError("the model was being built before validation finished")

    monkeypatch.setattr(builder, "_backbone", forbidden)


@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("w") / "tiny.weights.h5")
    tiny_model().save_weights(path)
    return path


BAD_INPUTS = [
    ({"variant": "XL"}, "Unknown HIRI-ViT variant"),
    ({"variant": 3}, "Unknown HIRI-ViT variant"),
    ({"input_shape": (32, 448, 3)}, "too small"),
    ({"input_shape": (63, 63, 3)}, "too small"),
    ({"input_shape": (448, 448)}, "height, width, channels"),
    ({"input_shape": (448, 448, 4)}, "3 channels"),
    ({"input_shape": (448, 448, 1)}, "3 channels"),
    ({"input_shape": (448.0, 448, 3)}, "int"),
    ({"pooling": "mean", "include_top": False}, "pooling must be one of"),
    ({"classifier_activation": "no_such_activation"}, "classifier_activation"),
    ({"classes": 0}, "classes must be an int >= 1"),
    ({"weights": "imagenet"}, "no HIRI-ViT checkpoint trained on ImageNet"),
    ({"weights": "/no/such/file.weights.h5"}, "neither None, a known name"),
    ({"weights": 42}, "weights must be None"),
    ({"weights": "imagenet", "variant": "tiny"}, "no HIRI-ViT checkpoint trained on ImageNet"),
    ({"drop_path_rate": 1.0}, "drop_path_rate"),
    ({"drop_path_rate": "0.1"}, "drop_path_rate"),
    ({"include_top": "no"}, "include_top must be True or False"),
    ({"pin_late_grids": "yes"}, "pin_late_grids must be True or False"),
    ({"include_preprocessing": None}, "include_preprocessing must be True or False"),
    ({"reset_head": 1}, "reset_head must be True or False"),
    ({"input_tensor": np.zeros((1, 64, 64, 3))}, "input_tensor must be a Keras tensor"),
    ({"pin_late_grids": True, "input_shape": (None, None, 3), "include_top": False}, "static"),
    ({"block_types": ("hr", "hr", "cffn", "mlp", "transformer")}, "Unknown block type"),
    ({"stem": "patchify"}, "Unknown stem"),
    ({"downsample": "pool"}, "Unknown downsample"),
]


@pytest.mark.parametrize("kwargs,message", BAD_INPUTS, ids=[m for _, m in BAD_INPUTS])
def test_bad_input_raises_before_building(no_build, kwargs, message):
    kwargs = dict(kwargs)
    variant = kwargs.pop("variant", "S")
    with pytest.raises(ValueError, match=message):
        keras_hiri.HiriViT(variant, **kwargs)


def test_channels_first_follows_the_keras_setting_and_bad_formats_are_refused(no_build):
    with pytest.raises(ValueError, match="data_format must be one of"):
        keras_hiri.HiriViTS(data_format="NCHW")
    with pytest.raises(ValueError, match=r"\(channels, height, width\) for data_format='channels_first'"):
        keras_hiri.HiriViTS(input_shape=(448, 448), data_format="channels_first")
    with pytest.raises(ValueError, match="3 channels"):  # (448, 448, 3) read as C=448
        keras_hiri.HiriViTS(input_shape=(448, 448, 3), data_format="channels_first")


def test_channels_first_model_equals_channels_last_one(tmp_path):
    keras.config.set_image_data_format("channels_first")
    try:
        first = tiny_model(input_shape=(3, 64, 72), classifier_activation=None)
    finally:
        keras.config.set_image_data_format("channels_last")
    assert first.data_format == "channels_first" and tuple(first.input.shape) == (None, 3, 64, 72)
    last = tiny_model(input_shape=(64, 72, 3), classifier_activation=None)
    randomize_batchnorm_statistics(last)
    path = str(tmp_path / "last.weights.h5")
    last.save_weights(path)
    first.load_weights(path)  # channels_last weights, channels_first model
    x = images(2, (64, 72, 3))
    nchw = x.transpose(0, 3, 1, 2)
    np.testing.assert_allclose(to_numpy(first(nchw, training=False)),
                               to_numpy(last(x, training=False)), atol=1e-5)
    # Backbones: the 4-D output and every pyramid level come back channels_first.
    kwargs = dict(include_top=False, weights=path, reset_head=False)
    bb_last = tiny_model(input_shape=(64, 72, 3), **kwargs)
    bb_first = tiny_model(input_shape=(3, 64, 72), data_format="channels_first", **kwargs)
    np.testing.assert_allclose(to_numpy(bb_first(nchw)), to_numpy(bb_last(x)).transpose(0, 3, 1, 2),
                               atol=1e-5)
    levels_last = keras.Model(bb_last.inputs, bb_last.pyramid_outputs)(x)
    levels_first = keras.Model(bb_first.inputs, bb_first.pyramid_outputs)(nchw)
    for key in levels_last:
        np.testing.assert_allclose(to_numpy(levels_first[key]),
                                   to_numpy(levels_last[key]).transpose(0, 3, 1, 2), atol=1e-5)
    assert [i["reduction"] for i in bb_first.feature_info] == [i["reduction"] for i in bb_last.feature_info]
    # Folding and the config round trip keep the layout.
    folded = keras_hiri.fold_batchnorm(first)
    np.testing.assert_allclose(to_numpy(folded(nchw, training=False)),
                               to_numpy(last(x, training=False)), atol=1e-4)
    revived = keras_hiri.HiriViTModel.from_config(first.get_config())
    assert revived.data_format == "channels_first"
    assert keras_hiri.profile(first).gmacs == pytest.approx(keras_hiri.profile(last).gmacs)


def test_weights_classes_mismatch_is_rejected_before_building(tiny_weights, no_build):
    with pytest.raises(ValueError, match=f"needs classes={TINY_CLASSES}"):
        keras_hiri.HiriViT(TINY, input_shape=TINY_INPUT_SHAPE, weights=tiny_weights, classes=5)


def test_weights_with_wrong_extension(tmp_path, no_build):
    path = tmp_path / "weights.npz"
    path.write_bytes(b"not weights")
    with pytest.raises(ValueError, match="must end in"):
        keras_hiri.HiriViTS(weights=str(path))


def test_notop_checkpoint_with_top_is_rejected(tmp_path):
    path = str(tmp_path / "notop.weights.h5")
    tiny_model(include_top=False).save_weights(path)
    with pytest.raises(ValueError, match="no classifier"):
        tiny_model(weights=path)


def test_weights_path_loads_same_outputs(tiny_weights):
    source = tiny_model()
    source.load_weights(tiny_weights)
    loaded = tiny_model(weights=tiny_weights)
    x = images()
    np.testing.assert_allclose(
        to_numpy(loaded(x, training=False)), to_numpy(source(x, training=False)), atol=1e-6
    )


def test_variant_shortcuts_and_names():
    for letter, fn in [("S", keras_hiri.HiriViTS), ("B", keras_hiri.HiriViTB), ("L", keras_hiri.HiriViTL)]:
        assert fn.__name__ == f"HiriViT{letter}"
        assert "Table I" in fn.__doc__
    assert builder.variants_lib.get_config("hiri_vit_b") is keras_hiri.VARIANTS["B"]


def test_default_shapes():
    model = tiny_model(input_shape=None)
    assert model.input_shape == (None, 448, 448, 3)
    model = tiny_model(input_shape=None, include_top=False)
    assert model.input_shape == (None, None, None, 3)


@pytest.mark.parametrize("shape", [(448, 640, 3), (97, 131, 3)])
def test_pyramid_strides(shape):
    model = tiny_model(input_shape=shape, include_top=False)
    pyramid = model.pyramid_outputs
    assert list(pyramid) == ["P2", "P3", "P4", "P5", "P6"]
    for level, (key, tensor) in enumerate(pyramid.items(), start=2):
        stride = 2**level
        assert tensor.shape[1:3] == (-(-shape[0] // stride), -(-shape[1] // stride)), key
        assert tensor.shape[-1] == TINY.widths[level - 2]
    info = model.feature_info
    assert [i["reduction"] for i in info] == [4, 8, 16, 32, 64]
    extractor = keras.Model(model.input, pyramid)
    out = extractor(images(1, shape))
    assert {k: tuple(v.shape) for k, v in out.items()} == {
        k: (1, *v.shape[1:]) for k, v in pyramid.items()
    }


def test_dynamic_input_size_runs_any_shape():
    model = tiny_model(input_shape=(None, None, 3), include_top=False, pooling="avg")
    for shape in [(64, 64, 3), (101, 77, 3)]:
        assert to_numpy(model(images(2, shape), training=False)).shape == (2, TINY.widths[-1])


@pytest.mark.parametrize("pooling,expected", [(None, 4), ("avg", 2), ("max", 2)])
def test_pooling(pooling, expected):
    model = tiny_model(include_top=False, pooling=pooling)
    assert len(model.output_shape) == expected


def test_top_has_softmax_and_logits_option():
    model = tiny_model()
    probs = to_numpy(model(images(), training=False))
    np.testing.assert_allclose(probs.sum(-1), 1.0, atol=1e-5)
    assert model.layers[-1].name == "predictions_activation"
    logits_model = tiny_model(classifier_activation=None)
    assert logits_model.layers[-1].name == "predictions"


def test_input_tensor():
    inp = keras.Input((80, 96, 3))
    model = tiny_model(input_tensor=inp, input_shape=None)
    assert model.input_shape == (None, 80, 96, 3)
    four = keras.Input((80, 96, 4))
    x = keras.layers.Conv2D(3, 1)(four)
    model = tiny_model(input_tensor=x, input_shape=None)
    assert model.input_shape == (None, 80, 96, 4)


@pytest.mark.parametrize("channels", [1, 4])
def test_backbone_takes_other_channel_counts_and_skips_rgb_normalisation(channels):
    """As keras.applications: (None, None, 1 or 4) without the top builds."""
    model = tiny_model(include_top=False, input_shape=(None, None, channels))
    assert "preprocessing" not in [layer.name for layer in model.layers]
    out = model(np.ones((1, 64, 80, channels), "float32"))
    assert tuple(out.shape) == (1, 1, 2, 48)


def test_layer_names_do_not_depend_on_model_name():
    a = [layer.name for layer in tiny_model(name="first").layers]
    b = [layer.name for layer in tiny_model(name="second").layers]
    assert a == b
    assert {"stem", "stage1_block1", "stage3_downsample", "stage5_norm", "head", "predictions"} <= set(a)


@pytest.mark.parametrize("resolution,grids", [(224, (56, 28, 28, 14, 7)), (384, (96, 48, 28, 14, 7))])
def test_pin_late_grids(resolution, grids):
    model = tiny_model(input_shape=(resolution, resolution, 3), pin_late_grids=True)
    got = tuple(t.shape[1] for t in model.pyramid_outputs.values())
    assert got == grids
    if resolution == 224:
        assert model.get_layer("stage3_downsample").strides == 1
    else:
        assert model.get_layer("stage3_resize").size == (28, 28)


def test_ablation_options_build():
    model = tiny_model(
        stem="vit", downsample="plain", block_types=("hr", "transformer", "cffn", "hr", "transformer")
    )
    assert type(model.get_layer("stem")).__name__ == "ViTStem"
    assert type(model.get_layer("stage2_downsample")).__name__ == "PlainDownsample"
    assert type(model.get_layer("stage2_block1")).__name__ == "TransformerBlock"
    assert type(model.get_layer("stage4_block1")).__name__ == "HRBlock"
    assert to_numpy(model(images(), training=False)).shape == (2, TINY_CLASSES)


def test_keras_file_round_trip(tmp_path):
    model = tiny_model(drop_path_rate=0.1)
    x = images()
    want = to_numpy(model(x, training=False))
    path = os.path.join(tmp_path, "tiny.keras")
    model.save(path)
    revived = keras.saving.load_model(path)
    assert isinstance(revived, keras_hiri.HiriViTModel)
    np.testing.assert_allclose(to_numpy(revived(x, training=False)), want, atol=1e-6)
    assert list(revived.pyramid_outputs) == ["P2", "P3", "P4", "P5", "P6"]
    # A .keras file is also accepted as weights=.
    again = tiny_model(drop_path_rate=0.1, weights=path)
    np.testing.assert_allclose(to_numpy(again(x, training=False)), want, atol=1e-6)


def test_gradient_reaches_every_trainable_weight():
    model = tiny_model(drop_path_rate=0.0)
    model.compile(optimizer=keras.optimizers.SGD(1.0), loss="categorical_crossentropy")
    before = [to_numpy(w).copy() for w in model.trainable_weights]
    y = keras.utils.to_categorical([1, 3], TINY_CLASSES)
    model.train_on_batch(images(), y)
    unchanged = [
        w.path for w, old in zip(model.trainable_weights, before) if np.array_equal(to_numpy(w), old)
    ]
    assert not unchanged, f"no gradient reached: {unchanged}"


def test_stage_specs_hold_the_stage_rules():
    """One spec per stage: block, norm, downsampling, stride and grid."""
    specs = keras_hiri.VARIANTS["S"].stage_specs((224, 224), pin_late_grids=True)
    assert [s.downsample for s in specs] == [None, "irds_a", "irds_a", "irds_b", "irds_b"]
    assert [s.norm for s in specs] == ["bn", "bn", "bn", "ln", "ln"]
    assert [s.grid for s in specs] == [(56, 56), (28, 28), (28, 28), (14, 14), (7, 7)]
    assert specs[2].strides == 1 and specs[2].resize_to is None
    at384 = keras_hiri.VARIANTS["S"].stage_specs((384, 384), pin_late_grids=True)
    assert at384[2].strides == 2 and at384[2].resize_to == (28, 28)
    plain = keras_hiri.VARIANTS["S"].stage_specs((448, 448))
    assert [s.grid[0] for s in plain] == [112, 56, 28, 14, 7]


def test_feature_info_reports_real_strides_with_pinned_grids():
    model = tiny_model(input_shape=(224, 224, 3), pin_late_grids=True, include_top=False)
    assert [i["reduction"] for i in model.feature_info] == [4, 8, 8, 16, 32]


def test_model_accessors():
    model = tiny_model()
    assert model.classifier.name == "predictions" and model.classifier.units == TINY_CLASSES
    assert model.head_norm.name == "head_norm"
    assert [stage for stage, _ in model.stage_norms()] == [1, 2, 3, 4, 5]
    backbone = tiny_model(include_top=False)
    assert backbone.classifier is None and backbone.head_norm is None


def test_dtype_reaches_every_layer_and_the_classifier_stays_float32():
    model = tiny_model(input_shape=(64, 64, 3), dtype="mixed_bfloat16")
    float32 = {naming.HEAD_NORM, naming.CLASSIFIER, naming.CLASSIFIER_ACTIVATION}
    layers = [layer for layer in model_layers(model)
              if not isinstance(layer, keras.layers.InputLayer)]
    assert len(layers) > 50  # sub-layers built in build() are included
    for layer in layers:
        expected = "float32" if layer.name in float32 else "mixed_bfloat16"
        assert layer.dtype_policy.name == expected, layer.name
    assert keras.config.dtype_policy().name == "float32"  # the global policy is untouched
    out = model(images(1, (64, 64, 3)))
    assert keras.backend.standardize_dtype(out.dtype) == "float32"
    backbone = tiny_model(input_shape=(64, 64, 3), include_top=False, dtype="bfloat16")
    levels = backbone.pyramid_outputs.values()
    assert {keras.backend.standardize_dtype(level.dtype) for level in levels} == {"bfloat16"}


def test_variant_shortcuts_take_hiri_vit_arguments_but_variant():
    import inspect

    full = list(inspect.signature(keras_hiri.HiriViT).parameters.values())
    for shortcut in (keras_hiri.HiriViTS, keras_hiri.HiriViTB, keras_hiri.HiriViTL):
        assert list(inspect.signature(shortcut).parameters.values()) == full[1:]
        assert shortcut.__name__.startswith("HiriViT") and "Table I" in shortcut.__doc__


def test_remat_trains_exactly_as_without_it():
    """remat=True: one SGD step with drop-path gives the same weights, BatchNorm
    statistics and seed states as without it (the backward pass recomputes the
    forward pass's masks and does not update the statistics twice)."""
    x = np.random.default_rng(0).uniform(0, 255, (4, 64, 64, 3)).astype("float32")
    y = np.array([0, 1, 2, 3])
    states, start = {}, None
    for remat in (False, True):
        keras.utils.set_random_seed(0)
        model = tiny_model(input_shape=(64, 64, 3), classes=4, drop_path_rate=0.3, remat=remat)
        if remat:
            model.set_weights(start)
        else:
            start = model.get_weights()
        model.compile(optimizer=keras.optimizers.SGD(0.1), loss="sparse_categorical_crossentropy")
        model.train_on_batch(x, y)
        states[remat] = [(v.path, to_numpy(v)) for v in model.variables]
    assert builder.remat_layer_names(TINY.stage_specs((64, 64))) == [
        "stem", "stage1_block1", "stage2_downsample", "stage2_block1", "stage3_downsample", "stage3_block1",
        "stage4_downsample", "stage4_block1", "stage4_block2", "stage5_downsample", "stage5_block1"]
    for (path, plain), (_, rematerialized) in zip(states[False], states[True]):
        np.testing.assert_allclose(rematerialized, plain, rtol=1e-4, atol=1e-6, err_msg=path)
    seeds = [value for path, value in states[True] if "seed_generator_state" in path]
    assert seeds and {int(value[-1]) for value in seeds} == {1, 2}  # a draw per branch, none re-drawn
