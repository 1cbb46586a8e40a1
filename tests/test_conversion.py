import os

import numpy as np
import pytest

from keras_hiri.io import conversion
from tests.helpers import load_script, to_numpy
from tests.tiny import images, randomize_batchnorm_statistics, tiny_model

torch = pytest.importorskip("torch")


def _script():
    return load_script("weights", "convert_pytorch")


@pytest.fixture
def source():
    model = tiny_model(classifier_activation=None)
    randomize_batchnorm_statistics(model)
    return model


def test_naming_scheme(source):
    keys = set(conversion.to_state_dict(source))
    for key in ["stem.hi_dw.weight", "stages.1.downsample.short_conv.weight",
                "stages.3.blocks.1.attn.kv.bias", "stages.2.blocks.0.cffn.dw.weight",
                "stages.0.blocks.0.lo_bn.running_var", "stages.4.norm.weight",
                "head.attn.q.weight", "head_norm.bias", "fc.weight"]:
        assert key in keys, key
    state = conversion.to_state_dict(source)
    assert state["stages.3.blocks.1.attn.kv.weight"].shape == (64, 32)  # (out, in)
    assert state["stem.conv.weight"].shape == (8, 3, 3, 3)  # (out, in, kh, kw)
    assert state["stem.hi_dw.weight"].shape == (8, 1, 3, 3)


def _square_tiny():
    from keras_hiri import HiriViT

    model = HiriViT("tiny", input_shape=(64, 64, 3), classes=10, classifier_activation=None)
    randomize_batchnorm_statistics(model)
    return model


@pytest.mark.backend_independent
def test_convert_script_from_torch_file(tmp_path):
    """A state_dict saved with torch.save from the project's own model converts
    back into a model with the same outputs."""
    source = _square_tiny()
    state = {k: torch.from_numpy(v) for k, v in conversion.to_state_dict(source).items()}
    state["stem.bn.num_batches_tracked"] = torch.tensor(7)
    pt = str(tmp_path / "model.pth")
    torch.save(state, pt)
    out = str(tmp_path / "converted.weights.h5")
    _script().main([pt, "--variant", "tiny", "--image-size", "64", "--classes", "10",
                    "--output", out])
    # No position embeddings: the converted weights serve any input size.
    from keras_hiri import HiriViT

    for shape in [(64, 64, 3), (96, 80, 3)]:
        target = HiriViT("tiny", input_shape=shape, classes=10, classifier_activation=None)
        target.load_weights(out)
        reference = HiriViT("tiny", input_shape=shape, classes=10, classifier_activation=None)
        reference.set_weights(source.get_weights())
        x = images(2, shape)
        np.testing.assert_allclose(
            to_numpy(target(x, training=False)), to_numpy(reference(x, training=False)), atol=1e-5
        )


def test_script_checks_reference_outputs(tmp_path):
    square = _square_tiny()
    pt = str(tmp_path / "m.pth")
    torch.save({k: torch.from_numpy(v) for k, v in conversion.to_state_dict(square).items()}, pt)
    x = images(2, (64, 64, 3))
    logits = to_numpy(square(x, training=False))
    np.savez(tmp_path / "good.npz", images=x, logits=logits)
    np.savez(tmp_path / "bad.npz", images=x, logits=logits + 0.01)
    args = [pt, "--variant", "tiny", "--image-size", "64", "--classes", "10"]
    _script().main(args + ["--output", str(tmp_path / "a.weights.h5"), "--reference", str(tmp_path / "good.npz")])
    with pytest.raises(SystemExit, match="differ from the reference"):
        _script().main(args + ["--output", str(tmp_path / "b.weights.h5"), "--reference", str(tmp_path / "bad.npz")])
    assert not os.path.exists(tmp_path / "b.weights.h5")


@pytest.mark.parametrize("break_it,message", [
    (lambda s: s.update({"extra.weight": np.zeros(3)}), "1 unused"),
    (lambda s: s.pop("fc.bias"), "1 missing"),
    (lambda s: s.update({"fc.weight": np.zeros((10, 47))}), "1 with the wrong shape"),
])
def test_mismatches_load_nothing(source, break_it, message):
    state = conversion.to_state_dict(source)
    break_it(state)
    target = tiny_model(classifier_activation=None)
    before = [to_numpy(w).copy() for w in target.weights]
    with pytest.raises(ValueError, match=message):
        conversion.load_state_dict(target, state)
    for w, b in zip(target.weights, before):
        np.testing.assert_array_equal(to_numpy(w), b)


@pytest.mark.backend_independent
def test_convert_script_from_safetensors(tmp_path):
    safetensors_numpy = pytest.importorskip("safetensors.numpy")
    source = _square_tiny()
    path = str(tmp_path / "model.safetensors")
    safetensors_numpy.save_file(conversion.to_state_dict(source), path)
    out = str(tmp_path / "converted.weights.h5")
    _script().main([path, "--variant", "tiny", "--image-size", "64", "--classes", "10",
                    "--output", out])
    from keras_hiri import HiriViT

    target = HiriViT("tiny", input_shape=(64, 64, 3), classes=10, classifier_activation=None)
    target.load_weights(out)
    x = images(2, (64, 64, 3))
    np.testing.assert_allclose(
        to_numpy(target(x, training=False)), to_numpy(source(x, training=False)), atol=1e-5
    )
