import numpy as np
import pytest

import keras_hiri
from keras_hiri import imagenet


def test_decode_predictions_offline():
    preds = np.zeros((2, 1000), "float32")
    preds[0, 281], preds[0, 285] = 0.9, 0.1
    preds[1, 386] = 1.0
    decoded = keras_hiri.decode_predictions(preds, top=2)
    assert decoded[0][0] == ("n02123045", "tabby", pytest.approx(0.9))
    assert decoded[0][1][1] == "Egyptian_cat"
    assert decoded[1][0][:2] == ("n02504458", "African_elephant")
    assert len(imagenet.class_index()) == 1000


@pytest.mark.parametrize("shape", [(1000,), (2, 10)])
def test_decode_predictions_rejects_bad_shapes(shape):
    with pytest.raises(ValueError, match=r"\(samples, 1000\)"):
        keras_hiri.decode_predictions(np.zeros(shape))


def test_preprocess_input_modes():
    x = np.full((1, 2, 2, 3), 255, "uint8")
    np.testing.assert_array_equal(keras_hiri.preprocess_input(x), x.astype("float32"))
    torch_style = keras_hiri.preprocess_input(x, mode="torch")
    want = (1.0 - np.array([0.485, 0.456, 0.406])) / np.array([0.229, 0.224, 0.225])
    np.testing.assert_allclose(torch_style[0, 0, 0], want, rtol=1e-5)
    with pytest.raises(ValueError, match="mode"):
        keras_hiri.preprocess_input(x, mode="caffe")
    with pytest.raises(ValueError, match="RGB"):
        keras_hiri.preprocess_input(np.zeros((1, 2, 2, 4)))


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
