"""Keras' own ``model.export`` works for HIRI-ViT wherever it works for
keras.applications' ConvNeXtTiny: ``tf_saved_model`` on TensorFlow and JAX,
``litert`` on TensorFlow (no Select TF ops), each artifact run by its own
runtime. (On PyTorch Keras exports neither without extra packages, for
ConvNeXtTiny too; ``keras_hiri.export`` is tested in test_serving.py.)"""

import keras
import numpy as np
import pytest

from tests.tiny import images, tiny_model

BACKEND = keras.backend.backend()


@pytest.fixture
def model_and_batch():
    model = tiny_model()
    x = images(2)
    return model, x, model.predict(x, verbose=0)


@pytest.mark.skipif(BACKEND not in ("tensorflow", "jax"), reason="Keras exports SavedModels from TF and JAX")
def test_keras_tf_saved_model_runs_in_tensorflow(tmp_path, model_and_batch):
    tf = pytest.importorskip("tensorflow")
    model, x, expected = model_and_batch
    model.export(str(tmp_path / "saved"), format="tf_saved_model", verbose=False)
    restored = tf.saved_model.load(str(tmp_path / "saved"))
    np.testing.assert_allclose(restored.serve(tf.constant(x)).numpy(), expected, atol=1e-4)


@pytest.mark.skipif(BACKEND != "tensorflow", reason="Keras' litert export is TensorFlow's here")
def test_keras_litert_runs_in_the_interpreter_without_select_tf_ops(tmp_path, model_and_batch):
    tf = pytest.importorskip("tensorflow")
    model, x, expected = model_and_batch
    path = tmp_path / "model.tflite"
    model.export(str(path), format="litert", verbose=False)
    assert b"Flex" not in path.read_bytes()  # no Select TF op: the builtin runtime runs it alone
    interpreter = tf.lite.Interpreter(
        model_path=str(path),
        experimental_op_resolver_type=tf.lite.experimental.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    interpreter.allocate_tensors()
    source, target = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    for i in range(len(x)):  # the exported signature takes the batch it was traced with: one image
        if tuple(source["shape"]) != (1, *x.shape[1:]):
            interpreter.resize_tensor_input(source["index"], (1, *x.shape[1:]))
            interpreter.allocate_tensors()
        interpreter.set_tensor(source["index"], x[i:i + 1])
        interpreter.invoke()
        np.testing.assert_allclose(interpreter.get_tensor(target["index"]), expected[i:i + 1], atol=1e-4)
