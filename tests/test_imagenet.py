import numpy as np
import pytest

import keras_hiri
from keras_hiri import imagenet


@pytest.mark.backend_independent
def test_decode_predictions_offline():
    preds = np.zeros((2, 1000), "float32")
    preds[0, 281], preds[0, 285] = 0.9, 0.1
    preds[1, 386] = 1.0
    decoded = keras_hiri.decode_predictions(preds, top=2)
    assert decoded[0][0] == ("n02123045", "tabby", pytest.approx(0.9))
    assert decoded[0][1][1] == "Egyptian_cat"
    assert decoded[1][0][:2] == ("n02504458", "African_elephant")
    assert len(imagenet.class_index()) == 1000


@pytest.mark.backend_independent
@pytest.mark.parametrize("shape", [(1000,), (2, 10)])
def test_decode_predictions_rejects_bad_shapes(shape):
    with pytest.raises(ValueError, match=r"\(samples, 1000\)"):
        keras_hiri.decode_predictions(np.zeros(shape))


@pytest.mark.backend_independent
@pytest.mark.parametrize("top,message", [(0, "top must be an int >= 1"), (2.0, "top must be an int >= 1"),
                                         (1001, "top must be at most 1000")])
def test_decode_predictions_rejects_a_bad_top(top, message):
    with pytest.raises(ValueError, match=message):
        keras_hiri.decode_predictions(np.zeros((1, 1000)), top=top)


def test_preprocess_input_modes():
    x = np.full((1, 2, 2, 3), 255, "uint8")
    np.testing.assert_array_equal(keras_hiri.preprocess_input(x), x.astype("float32"))
    torch_style = keras_hiri.preprocess_input(x, mode="torch")
    want = (1.0 - np.array([0.485, 0.456, 0.406])) / np.array([0.229, 0.224, 0.225])
    np.testing.assert_allclose(torch_style[0, 0, 0], want, rtol=1e-5)
    with pytest.raises(ValueError, match="mode"):
        keras_hiri.preprocess_input(x, mode="caffe")
    with pytest.raises(ValueError, match="RGB"):
        keras_hiri.preprocess_input(np.zeros((1, 2, 2, 4)), mode="torch")
    with pytest.raises(ValueError, match="data_format"):
        keras_hiri.preprocess_input(x, data_format="NHWC")


def test_in_model_preprocessing_equals_torch_mode():
    """include_preprocessing=True == include_preprocessing=False + mode='torch'."""
    from tests.tiny import images, tiny_model
    from tests.helpers import to_numpy

    a = tiny_model(include_top=False)
    b = tiny_model(include_top=False, include_preprocessing=False)
    b.set_weights(a.get_weights())
    x = images()
    np.testing.assert_allclose(
        to_numpy(a(x, training=False)),
        to_numpy(b(keras_hiri.preprocess_input(x, mode="torch"), training=False)),
        atol=1e-4,
    )


TORCH_WANT = (np.array([10.0, 128.0, 255.0]) / 255.0 - np.array([0.485, 0.456, 0.406])) / np.array(
    [0.229, 0.224, 0.225]
)


def _pixels():
    return np.tile(np.array([10.0, 128.0, 255.0], "float32"), (2, 4, 4, 1))


@pytest.mark.parametrize("mode", ["in_model", "torch"])
def test_preprocess_input_on_backend_tensors_eager_and_compiled(mode):
    import keras

    x = _pixels()
    want = keras_hiri.preprocess_input(x, mode=mode)
    eager = keras_hiri.preprocess_input(keras.ops.convert_to_tensor(x), mode=mode)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(eager), want, rtol=1e-6)
    # Symbolic (a Lambda layer in a functional model), then compiled (jit).
    inputs = keras.Input((4, 4, 3))
    layer = keras.layers.Lambda(lambda t: keras_hiri.preprocess_input(t, mode=mode))
    model = keras.Model(inputs, layer(inputs))
    model.compile(jit_compile=keras.backend.backend() != "torch")
    np.testing.assert_allclose(model.predict(x, verbose=0), want, rtol=1e-6)
    if mode == "torch":
        np.testing.assert_allclose(want[0, 0, 0], TORCH_WANT, rtol=1e-5)


def test_preprocess_input_channels_first():
    x = np.transpose(_pixels(), (0, 3, 1, 2))
    out = keras_hiri.preprocess_input(x, data_format="channels_first", mode="torch")
    np.testing.assert_allclose(out[0, :, 0, 0], TORCH_WANT, rtol=1e-5)


@pytest.mark.backend_independent
def test_preprocess_input_inside_tf_data():
    tf = pytest.importorskip("tensorflow")
    ds = tf.data.Dataset.from_tensor_slices(_pixels()).batch(2)
    ds = ds.map(lambda t: keras_hiri.preprocess_input(t, mode="torch"))
    out = next(iter(ds)).numpy()
    np.testing.assert_allclose(out[1, 3, 3], TORCH_WANT, rtol=1e-5)


def test_decode_predictions_takes_backend_tensors_that_require_grad():
    import keras

    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1000)])
    preds = model(np.ones((2, 4), "float32"))  # on torch: a tensor that requires grad
    decoded = keras_hiri.decode_predictions(preds, top=3)
    best = int(np.argmax(keras.ops.convert_to_numpy(preds)[1]))
    assert decoded[1][0][:2] == imagenet.class_index()[best]
    assert len(decoded) == 2 and len(decoded[0]) == 3
