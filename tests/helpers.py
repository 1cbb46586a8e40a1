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


# Python code that prints how many minor page faults a 256 MiB block costs the
# second time it is malloc'ed, written and freed (glibc): ~65 k (every page)
# when glibc hands freed blocks back to the kernel, ~0 when the process keeps
# them (keras_hiri.retain_freed_memory). Append it to a child process's code.
SECOND_MALLOC_FAULTS = """
import ctypes, ctypes.util, resource
libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
def one_round(size=256 << 20):
    block = libc.malloc(size)
    ctypes.memset(block, 1, size)
    libc.free(block)
one_round()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
one_round()
print("FAULTS", resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""
BLOCK_PAGES = (256 << 20) // 4096


def _child_stdout(code, env=None):
    """Runs ``code`` in a fresh Python process in the repository (so
    ``benchmarks`` and ``keras_hiri_cli`` import), with ``env`` (default: this
    process's); asserts it succeeded and returns what it printed."""
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout


def second_malloc_faults(setup):
    """Runs ``setup`` and then :data:`SECOND_MALLOC_FAULTS` in a fresh Python
    process; returns the page faults it printed."""
    return int(_child_stdout(setup + SECOND_MALLOC_FAULTS).split("FAULTS")[-1])


# Python code that compiles a small JAX program for the CPU (a matmul, GELU and
# a scale: what a transformer block's MLP does) and prints how many YNNPACK
# fusions XLA made of it and the result's sum. Append it to a child process's
# code (KERAS_BACKEND=jax).
YNN_FUSIONS = """
import jax, jax.numpy as jnp, numpy as np
x = jnp.asarray(np.random.default_rng(0).normal(size=(64, 128)), "float32")
w = jnp.asarray(np.random.default_rng(1).normal(size=(128, 256)), "float32") / 11.3
f = jax.jit(lambda x, w: jnp.sum(jax.nn.gelu(x @ w, approximate=False) * 0.5, axis=-1))  # dot, eltwise, reduce
print("YNN", f.lower(x, w).compile().as_text().count("kind\\":\\"__ynn_fusion"))
print("SUM", repr(float(f(x, w).sum())))
"""


def ynn_fusions(setup, env=None):
    """Runs ``setup`` and then :data:`YNN_FUSIONS` in a fresh Python process on
    JAX (in the repository; XLA_FLAGS as in ``env``, unset by default, and no
    persistent compilation cache); returns
    (the count of YNNPACK fusions, the result's sum)."""
    dropped = ("XLA_FLAGS", "JAX_COMPILATION_CACHE_DIR")  # the JAX test process's settings
    env = {k: v for k, v in os.environ.items() if k not in dropped} | {"KERAS_BACKEND": "jax"} | (env or {})
    out = _child_stdout(setup + YNN_FUSIONS, env)
    return int(out.split("YNN")[-1].split()[0]), float(out.split("SUM")[-1])


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
