"""Assertions and paths shared by the tests."""

import importlib.util
import os

import keras
import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # the repository


def load_script(folder, name):
    """Imports ``ROOT/folder/name.py`` (examples, benchmarks and scripts are not a package)."""
    spec = importlib.util.spec_from_file_location(name, os.path.join(ROOT, folder, f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def turn_off_grappler():
    """On TensorFlow, runs graphs without Grappler's rewrites, which cost a test's
    few steps more time than they gain (docs/DESIGN.md); the test process and the
    training subprocesses it starts call this. ``KERAS_HIRI_TEST_GRAPPLER=1``
    keeps Grappler on."""
    if keras.backend.backend() == "tensorflow" and os.environ.get("KERAS_HIRI_TEST_GRAPPLER") != "1":
        import tensorflow as tf

        tf.config.optimizer.set_experimental_options({"disable_meta_optimizer": True})


def to_numpy(x):
    return keras.ops.convert_to_numpy(x)


def infer(model, x):
    """``model(x, training=False)`` as numpy; on JAX through ``predict_on_batch``.

    JAX runs an eager call op by op and compiles each new (op, shape): a
    fresh process's first eager call of the tiny model takes 33 s, its
    compiled call 5 s. Compiling pays where a test's model has ops no earlier
    test ran (quantized, mixed-precision, serving and checkpoint models: those
    modules' JAX time fell by a fifth to a third, against the unchanged tests
    of the same run); where tests repeat the same float32 shapes, the per-op
    cache makes eager calls cheaper, so the builder and conversion tests keep
    them. Elsewhere eager: tracing a TensorFlow graph costs more than a few
    eager calls."""
    if keras.backend.backend() == "jax":
        return np.asarray(model.predict_on_batch(x))
    return to_numpy(model(x, training=False))


def assert_layer_round_trip(layer, *inputs, atol=1e-6, **call_kwargs):
    """get_config -> from_config and keras.saving (de)serialisation give a layer
    with the same config that, given the same weights, computes the same output."""
    out = to_numpy(layer(*inputs, **call_kwargs))
    config = layer.get_config()
    clone = layer.__class__.from_config(config)
    assert clone.get_config() == config
    revived = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(layer))
    assert type(revived) is type(layer)
    assert revived.get_config() == config
    for other in (clone, revived):
        other(*inputs, **call_kwargs)  # build
        other.set_weights(layer.get_weights())
        np.testing.assert_allclose(to_numpy(other(*inputs, **call_kwargs)), out, atol=atol)
    return out
