"""EMATeacher: the EMA of a model's full state, folded at most once per step."""

import keras
import numpy as np
import pytest

from keras_hiri.training.ema import EMATeacher
from tests.helpers import to_numpy
from tests.tiny import images, randomize_batchnorm_statistics, tiny_model


def test_update_folds_each_step_once_over_weights_and_statistics():
    model = tiny_model(input_shape=(64, 64, 3))
    ema = EMATeacher(model, momentum=0.75)
    start = [to_numpy(w).astype("float64") for w in model.weights]
    randomize_batchnorm_statistics(model, seed=1)  # moves the BN statistics too
    for w in model.trainable_weights:
        w.assign(w + 1.0)
    ema.update(model.weights, 1)
    ema.update(model.weights, 1)  # step 1 is folded already: nothing changes
    assert int(to_numpy(ema.folded)) == 1
    moved = 0
    for w, s0, t in zip(model.weights, start, ema.model.weights):
        expected = 0.75 * s0 + 0.25 * to_numpy(w).astype("float64")
        np.testing.assert_allclose(to_numpy(t), expected, rtol=1e-5, atol=1e-6, err_msg=w.path)
        moved += not np.allclose(to_numpy(t), s0)
    assert moved > len(start) // 2
    assert any("moving_mean" in w.path for w in ema.model.weights)
    ema.update(model.weights, 2)
    assert int(to_numpy(ema.folded)) == 2


def test_teacher_is_an_inference_copy_with_a_round_trip_config():
    model = tiny_model(input_shape=(64, 64, 3))
    ema = EMATeacher(model, momentum=0.9)
    assert not ema.model.trainable and ema.model is not model
    x = images(2, (64, 64, 3))
    np.testing.assert_allclose(to_numpy(ema(x)), to_numpy(model(x, training=False)), atol=1e-5)
    revived = EMATeacher.from_config(ema.get_config())
    assert revived.momentum == 0.9
    assert [w.shape for w in revived.model.weights] == [w.shape for w in ema.model.weights]


@pytest.mark.parametrize("momentum", [1.0, -0.1, "0.9"])
def test_bad_momentum(momentum):
    with pytest.raises(ValueError, match=r"ema_momentum must be in \[0, 1\)"):
        EMATeacher(tiny_model(input_shape=(64, 64, 3)), momentum=momentum)


def test_model_must_be_a_built_functional_model():
    with pytest.raises(ValueError, match="EMATeacher needs a built functional keras.Model"):
        EMATeacher(keras.layers.Dense(2))
