"""keras_hiri.training.state: the state a compiled step would create on its first trace, created first."""

import keras
import numpy as np
import pytest

from keras_hiri.training.state import build_optimizer, build_training_state


def _two_output_model():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((4,))
    model = keras.Model(inputs, {"a": keras.layers.Dense(2, name="a")(inputs),
                                 "b": keras.layers.Dense(3, name="b")(inputs)})
    model.compile(optimizer="adam", loss={"a": "mse", "b": "mse"})
    return model


def _fit(model, x, y):
    """The history of a one-step ``fit`` and how many times it ran the Python
    ``train_step`` (a trace on TensorFlow and JAX, the step on PyTorch)."""
    calls = []
    step = model.train_step
    model.train_step = lambda *args: calls.append(1) or step(*args)
    history = model.fit(x, y, batch_size=len(x), epochs=1, verbose=0, shuffle=False).history
    return history, len(calls)


def test_build_training_state_makes_the_first_fit_trace_once_and_leaves_no_trace():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(8, 4)).astype("float32")
    y = {"a": rng.normal(size=(8, 2)).astype("float32"), "b": rng.normal(size=(8, 3)).astype("float32")}
    built = _two_output_model()
    build_training_state(built, (x, y))
    assert built.optimizer.built
    history, traces = _fit(built, x, y)
    assert traces == 1
    plain = _two_output_model()  # same initial weights (seeded)
    build_optimizer(plain)
    plain_history, plain_traces = _fit(plain, x, y)
    # The eager loss pass changed no weight and no logged figure.
    assert set(history) == {"loss", "a_loss", "b_loss"}
    for key in history:
        assert history[key] == pytest.approx(plain_history[key], rel=1e-6), key
    if keras.backend.backend() == "tensorflow":  # why the call exists (Keras 3.15)
        assert plain_traces == 2
