import json
import os

import keras
import numpy as np
import pytest

import keras_hiri
from keras_hiri.io import weights
from tests.helpers import infer, to_numpy
from tests.tiny import TINY, tiny_model


@pytest.mark.backend_independent
def test_none_resolves_to_none():
    assert weights.resolve(None) is None


@pytest.mark.backend_independent
def test_imagenet_says_no_checkpoint_exists_and_what_to_pass():
    with pytest.raises(ValueError) as info:
        weights.resolve("imagenet")
    message = str(info.value)
    assert "no HIRI-ViT checkpoint trained on ImageNet exists" in message
    assert "weights=None" in message and ".weights.h5" in message


@pytest.mark.backend_independent
def test_unknown_name_lists_what_is_allowed():
    with pytest.raises(ValueError, match="neither None, a known name"):
        weights.resolve("imagenet21k")


def test_checkpoints_carry_their_own_metadata(tmp_path):
    top = str(tmp_path / "top.weights.h5")
    tiny_model(classes=7).save_weights(top)
    meta = weights.checkpoint_metadata(top)
    assert (meta["classes"], meta["include_top"], meta["variant"]) == (7, True, None)
    assert meta["config"]["widths"] == list(TINY.widths)
    notop = str(tmp_path / "notop.weights.h5")
    tiny_model(include_top=False).save_weights(notop)
    assert weights.checkpoint_metadata(notop)["include_top"] is False
    full = str(tmp_path / "model.keras")
    tiny_model(classes=3).save(full)
    assert weights.checkpoint_metadata(full)["classes"] == 3
    # A revived model (and so an EMA teacher, built from a config) keeps it.
    revived = keras_hiri.HiriViTModel.from_config(tiny_model(classes=3).get_config())
    assert revived.architecture["classes"] == 3
    registry_file = weights.fetch("tiny_skimage_patches_64")
    assert weights.checkpoint_metadata(registry_file)["variant"] == "TINY"


def test_weights_without_metadata_or_of_another_variant_are_refused(tmp_path):
    plain = str(tmp_path / "plain.weights.h5")
    model = tiny_model()
    keras.Model(model.inputs, model.outputs).save_weights(plain)  # a plain Keras model
    with pytest.raises(ValueError, match="carries no keras_hiri metadata"):
        tiny_model(weights=plain)
    other = str(tmp_path / "other.weights.h5")
    tiny_model().save_weights(other)
    with pytest.raises(ValueError, match=r"holds a HIRI-ViT of variant custom .*widths=\[16"):
        keras_hiri.HiriViT("tiny", input_shape=(64, 64, 3), classes=10, weights=other)


# ---------------------------------------------------------------- registry


@pytest.fixture
def registry_dir(tmp_path, monkeypatch):
    """A private registry: weights/ folder, manifest, and a 'remote' copy served by file:// URL."""
    local = tmp_path / "weights"
    remote = tmp_path / "remote"
    local.mkdir()
    remote.mkdir()
    model = keras_hiri.HiriViT("tiny", input_shape=(64, 64, 3), classes=4)
    for path in (local / "shipped.weights.h5", remote / "remote.weights.h5"):
        model.save_weights(str(path))
    digest = weights.sha256(str(local / "shipped.weights.h5"))
    remote_digest = weights.sha256(str(remote / "remote.weights.h5"))
    common = {"variant": "tiny", "dataset": "unit_test", "resolution": 64, "classes": 4,
              "include_top": True}
    manifest = {"weights": {
        "shipped": {**common, "file": "shipped.weights.h5", "url": None, "sha256": digest},
        "remote": {**common, "file": "remote.weights.h5",
                   "url": (remote / "remote.weights.h5").as_uri(), "sha256": remote_digest},
        "tampered": {**common, "file": "shipped.weights.h5", "url": None, "sha256": "0" * 64},
        "bad_remote": {**common, "file": "bad.weights.h5",
                       "url": (remote / "remote.weights.h5").as_uri(), "sha256": "1" * 64},
    }}
    (local / "manifest.json").write_text(json.dumps(manifest))
    monkeypatch.setattr(weights, "WEIGHTS_DIR", str(local))
    monkeypatch.setattr(weights, "MANIFEST", str(local / "manifest.json"))
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras_home"))
    return model, tmp_path


def test_registry_shipped_and_downloaded_files_load(registry_dir):
    model, tmp = registry_dir
    x = np.random.default_rng(0).uniform(0, 255, (2, 64, 64, 3)).astype("float32")
    want = infer(model, x)
    for name in ("shipped", "remote"):
        loaded = keras_hiri.HiriViT("tiny", input_shape=(64, 64, 3), classes=4, weights=name)
        np.testing.assert_allclose(infer(loaded, x), want, atol=1e-6)
    assert os.path.exists(tmp / "keras_home" / "models" / "keras_hiri" / "remote.weights.h5")


@pytest.mark.backend_independent
def test_hash_mismatch_is_reported_and_the_download_removed(registry_dir):
    _, tmp = registry_dir
    with pytest.raises(ValueError, match="corrupted or truncated"):
        keras_hiri.HiriViT("tiny", input_shape=(64, 64, 3), classes=4, weights="tampered")
    with pytest.raises(ValueError, match="do not match their sha256"):
        keras_hiri.HiriViT("tiny", input_shape=(64, 64, 3), classes=4, weights="bad_remote")
    assert not os.path.exists(tmp / "keras_home" / "models" / "keras_hiri" / "bad.weights.h5")


@pytest.mark.backend_independent
def test_truncated_cached_download_is_replaced(registry_dir):
    _, tmp = registry_dir
    cache = tmp / "keras_home" / "models" / "keras_hiri"
    cache.mkdir(parents=True)
    (cache / "remote.weights.h5").write_bytes(b"trunc")
    keras_hiri.HiriViT("tiny", input_shape=(64, 64, 3), classes=4, weights="remote")
    assert weights.sha256(str(cache / "remote.weights.h5")) == weights.registry()["remote"]["sha256"]


def test_registry_variant_and_classes_are_checked(registry_dir):
    with pytest.raises(ValueError, match="trained for variant 'tiny'"):
        keras_hiri.HiriViT("S", weights="shipped")
    with pytest.raises(ValueError, match="needs classes=4"):
        keras_hiri.HiriViT("tiny", input_shape=(64, 64, 3), classes=7, weights="shipped")


def test_transfer_learning(registry_dir):
    model, _ = registry_dir
    x = np.random.default_rng(1).uniform(0, 255, (2, 80, 96, 3)).astype("float32")
    # Backbone only, at another input size (no position embeddings to resize).
    backbone = keras_hiri.HiriViT("tiny", include_top=False, weights="shipped",
                                  input_shape=(80, 96, 3))
    reference = keras_hiri.HiriViT("tiny", include_top=False, input_shape=(80, 96, 3))
    for layer in reference.layers:
        if layer.weights:
            layer.set_weights(model.get_layer(layer.name).get_weights())
    np.testing.assert_allclose(infer(backbone, x),
                               infer(reference, x), atol=1e-5)
    # A new head for other classes: the backbone is loaded, the head is new.
    new = keras_hiri.HiriViT("tiny", input_shape=(80, 96, 3), classes=7, reset_head=True,
                             weights="shipped")
    assert new.output_shape == (None, 7)
    np.testing.assert_array_equal(
        to_numpy(new.get_layer("stage4_block1").weights[0]),
        to_numpy(model.get_layer("stage4_block1").weights[0]),
    )
    np.testing.assert_array_equal(
        to_numpy(new.get_layer("head").weights[0]), to_numpy(model.get_layer("head").weights[0])
    )


def test_shipped_checkpoint_is_real_and_classifies_held_out_patches():
    """The project's own checkpoint (trained on the skimage photo patches, not
    ImageNet) loads by name, passes its hash check and beats chance clearly."""
    from keras_hiri.training import data

    entry = weights.registry()["tiny_skimage_patches_64"]
    assert entry["dataset"] == "skimage_photo_patches" and "imagenet" not in entry["dataset"]
    model = keras_hiri.HiriViT("tiny", input_shape=(64, 64, 3), classes=10,
                               weights="tiny_skimage_patches_64")
    x, y, names = data.photo_patches("validation", patch_size=64, per_class=8)
    assert names == entry["class_names"]
    accuracy = float(np.mean(infer(model, x.astype("float32")).argmax(-1) == y))
    assert accuracy > 0.4  # chance is 0.1; the benchmark measured 0.653 on 320 patches


@pytest.mark.backend_independent
@pytest.mark.parametrize("damage", ["truncated", "garbage"])
def test_corrupt_weights_file_is_a_value_error_naming_it(tmp_path, damage):
    good = str(tmp_path / "good.weights.h5")
    tiny_model().save_weights(good)
    bad = str(tmp_path / "bad.weights.h5")
    data = open(good, "rb").read()
    with open(bad, "wb") as f:
        f.write(data[: len(data) // 2] if damage == "truncated" else b"not hdf5" * 100)
    with pytest.raises(ValueError, match=r"bad\.weights\.h5.*corrupt or truncated"):
        tiny_model(weights=bad)


@pytest.mark.backend_independent
def test_registry_ships_inside_the_package():
    """The manifest and its checkpoint are package data (they install with the wheel)."""
    package = os.path.dirname(keras_hiri.__file__)
    assert os.path.dirname(weights.MANIFEST) == os.path.join(package, "presets")
    for name, entry in weights.registry().items():
        assert weights.fetch(name) == os.path.join(package, "presets", entry["file"])
