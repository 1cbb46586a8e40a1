import pytest

from keras_hiri import weights
from tests.tiny import tiny_model


def test_none_resolves_to_none():
    assert weights.resolve(None) is None


def test_imagenet_says_no_checkpoint_exists_and_what_to_pass():
    with pytest.raises(ValueError) as info:
        weights.resolve("imagenet")
    message = str(info.value)
    assert "no HIRI-ViT checkpoint trained on ImageNet exists" in message
    assert "weights=None" in message and ".weights.h5" in message


def test_unknown_name_lists_what_is_allowed():
    with pytest.raises(ValueError, match="neither None, a known name"):
        weights.resolve("imagenet21k")


def test_checkpoint_num_classes(tmp_path):
    top = str(tmp_path / "top.weights.h5")
    tiny_model(classes=7).save_weights(top)
    assert weights.checkpoint_num_classes(top) == 7
    notop = str(tmp_path / "notop.weights.h5")
    tiny_model(include_top=False).save_weights(notop)
    assert weights.checkpoint_num_classes(notop) is None
    full = str(tmp_path / "model.keras")
    tiny_model(classes=3).save(full)
    assert weights.checkpoint_num_classes(full) == 3
