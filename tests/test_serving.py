import os
import subprocess
import sys

import numpy as np
import pytest

import keras_hiri
from keras_hiri.io.serving import export
from tests.helpers import ROOT, infer
from tests.tiny import TINY_CLASSES, images, randomize_batchnorm_statistics, tiny_model


@pytest.fixture(scope="module")
def classifier():
    """One untouched tiny classifier for the tests that only check arguments."""
    return tiny_model()


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("export")
    model = tiny_model()
    randomize_batchnorm_statistics(model)
    x = images(3)
    want = infer(model, x)
    target = export(model, str(tmp / "served"), version=2, top_k=3)
    assert target == os.path.join(str(tmp / "served"), "2")
    np.savez(tmp / "inputs.npz", images=x)
    env = dict(os.environ, PYTHONPATH=ROOT, KERAS_BACKEND="tensorflow", TF_CPP_MIN_LOG_LEVEL="3")
    run = subprocess.run(
        [sys.executable, "-m", "tests.serve_helper", target, str(tmp / "inputs.npz"),
         str(tmp / "out.npz")], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    return want, np.load(tmp / "out.npz"), model, tmp


def test_saved_model_layout_for_tf_serving(served):
    *_, tmp = served
    assert os.path.exists(os.path.join(tmp, "served", "2", "saved_model.pb"))
    assert os.path.isdir(os.path.join(tmp, "served", "2", "variables"))


@pytest.mark.parametrize("signature", ["serve_images", "serving_default", "serve_bytes"])
def test_signatures_match_keras_model(served, signature):
    want, out, *_ = served
    probs = out[f"{signature}/probabilities"]
    assert probs.shape == (3, TINY_CLASSES)
    assert np.abs(probs - want).max() <= 1e-4
    top = out[f"{signature}/top_k_indices"]
    np.testing.assert_array_equal(top[:, 0], want.argmax(-1))
    assert top.shape == (3, 3)
    np.testing.assert_allclose(out[f"{signature}/top_k_scores"][:, 0], want.max(-1), atol=1e-4)


def test_wrong_dtype_or_shape_is_rejected(served):
    _, out, *_ = served
    assert int(out["rejected"]) == 4  # int32, 2 channels, unbatched, undecodable bytes
    assert set(out["signatures"]) == {"serve_images", "serve_bytes", "serving_default"}


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"format": "torchscript"}, "format must be one of"),
        ({"version": 0}, "version"),
        ({"top_k": 0}, "top_k"),
        ({"top_k": 11}, "top_k"),
        ({"default_input": "text"}, "default_input"),
    ],
)
def test_bad_export_arguments(classifier, tmp_path, kwargs, message):
    with pytest.raises(ValueError, match=message):
        export(classifier, str(tmp_path), **kwargs)
    assert not os.listdir(tmp_path)  # refused before anything is written


def test_a_non_model_is_rejected(tmp_path):
    with pytest.raises(ValueError, match="export needs a built functional keras.Model"):
        export(str(tmp_path / "model.keras"), str(tmp_path / "served"))
    assert not os.listdir(tmp_path)


def test_dynamic_input_model_is_rejected(tmp_path):
    model = tiny_model(input_shape=(None, None, 3), include_top=False, pooling="avg")
    with pytest.raises(ValueError, match="static RGB input"):
        export(model, str(tmp_path))


def test_existing_version_is_not_overwritten(served):
    *_, model, tmp = served
    with pytest.raises(ValueError, match="already exists"):
        export(model, str(tmp / "served"), version=2)


@pytest.mark.runs_in("tensorflow")  # the export's own work; elsewhere it adds the hand-off to a TensorFlow process
def test_onnx_runs_in_onnxruntime_and_matches(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("tf2onnx")
    model = tiny_model()
    randomize_batchnorm_statistics(model)
    x = images(3)
    want = infer(model, x)
    path = keras_hiri.export(model, str(tmp_path / "hiri.onnx"), format="onnx", top_k=3)
    session = ort.InferenceSession(path)
    assert [i.name for i in session.get_inputs()] == ["images"]
    names = [o.name for o in session.get_outputs()]
    out = dict(zip(names, session.run(None, {"images": x})))
    assert np.abs(out["probabilities"] - want).max() <= 1e-4
    np.testing.assert_array_equal(out["top_k_indices"][:, 0], want.argmax(-1))
    for bad in (x.astype(np.float64), x[..., :2]):
        with pytest.raises(Exception, match="(?i)type|dimension|shape|invalid"):
            session.run(None, {"images": bad})


def test_onnx_path_must_be_a_file(classifier, tmp_path):
    with pytest.raises(ValueError, match=".onnx"):
        export(classifier, str(tmp_path / "dir"), format="onnx")


@pytest.mark.parametrize("kwargs,kind", [
    ({}, "probabilities"),
    ({"classifier_activation": None}, "logits"),
    ({"classifier_activation": "sigmoid"}, "scores"),
    ({"include_top": False, "pooling": "avg"}, "features"),
    ({"include_top": False}, "features"),
])
def test_outputs_are_named_by_what_they_are(kwargs, kind):
    from keras_hiri.io.serving import output_kind

    assert output_kind(tiny_model(**kwargs)) == kind


def test_top_k_is_refused_for_a_backbone(tmp_path):
    model = tiny_model(include_top=False, pooling="avg")
    with pytest.raises(ValueError, match="outputs features"):
        export(model, str(tmp_path), top_k=3)


@pytest.mark.runs_in("tensorflow")  # the export's own work; elsewhere it adds the hand-off to a TensorFlow process
def test_pooled_backbone_serves_features_without_top_k(tmp_path):
    served = export(tiny_model(include_top=False, pooling="avg"), str(tmp_path / "features"))
    code = (
        "import sys, tensorflow as tf\n"
        "sig = tf.saved_model.load(sys.argv[1]).signatures['serve_images']\n"
        "print(sorted(sig.structured_outputs))\n"
    )
    env = dict(os.environ, KERAS_BACKEND="tensorflow", TF_CPP_MIN_LOG_LEVEL="3")
    run = subprocess.run([sys.executable, "-c", code, served],
                         env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.strip().splitlines()[-1] == "['features']"


_SERVE_NCHW = """
import sys, numpy as np, tensorflow as tf
loaded = tf.saved_model.load(sys.argv[1])
x = np.load(sys.argv[2])["images"]
nchw = loaded.signatures["serve_images"](images=tf.constant(x.transpose(0, 3, 1, 2)))
pngs = tf.stack([tf.io.encode_png(tf.constant(im.astype(np.uint8))) for im in x])
from_bytes = loaded.signatures["serve_bytes"](image_bytes=pngs)
np.savez(sys.argv[3], images=nchw["probabilities"].numpy(), bytes=from_bytes["probabilities"].numpy())
"""


@pytest.mark.runs_in("tensorflow")  # the export's own work; elsewhere it adds the hand-off to a TensorFlow process
def test_channels_first_model_serves_nchw_images_and_decoded_bytes(tmp_path):
    model = tiny_model(input_shape=(3, *images(1).shape[1:3]), data_format="channels_first")
    x = images(2)  # NHWC
    want = infer(model, x.transpose(0, 3, 1, 2))
    target = export(model, str(tmp_path / "served"))
    np.savez(tmp_path / "in.npz", images=x)
    env = dict(os.environ, KERAS_BACKEND="tensorflow", TF_CPP_MIN_LOG_LEVEL="3")
    run = subprocess.run(
        [sys.executable, "-c", _SERVE_NCHW, target, str(tmp_path / "in.npz"), str(tmp_path / "out.npz")],
        env=env, capture_output=True, text=True, timeout=600,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    out = np.load(tmp_path / "out.npz")
    assert np.abs(out["images"] - want).max() <= 1e-4
    assert np.abs(out["bytes"] - want).max() <= 1e-4  # PNG of integer images: exact pixels
