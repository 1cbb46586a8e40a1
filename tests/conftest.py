import gc
import os

# The suite runs thousands of small XLA programs on JAX (Keras' eager calls
# compile op by op), and compiling is most of its time. Three XLA flags make
# each compile cheaper than what the compiled code loses on these tiny inputs:
# no backend optimisation passes (folding + distillation tests: 338 s ->
# 273 s), no expensive LLVM passes and the older elemental emitters instead
# of the fusion emitters (a fresh process's first eager call of the tiny
# model: 44-46 s -> 24-28 s; docs/DESIGN.md). Benchmarks never run under them.
#
# Training subprocesses (the SIGKILL-resume test's three, the CLI and example
# runs) compile the same programs again: JAX's persistent compilation cache,
# in a directory of this session that they inherit, compiles each once. The
# SIGKILL-resume test: 285 s without it, 185 s with it (this machine). Inside
# one process it gains nothing measurable (docs/DESIGN.md).
if os.environ.get("KERAS_BACKEND") == "jax":
    import atexit
    import shutil
    import tempfile

    # Appended to what the caller set (CI's second JAX run adds two host devices).
    _flags = os.environ.get("XLA_FLAGS", "")
    if "--xla_backend_optimization_level" not in _flags:
        os.environ["XLA_FLAGS"] = (_flags + " --xla_backend_optimization_level=0 "
                                   "--xla_llvm_disable_expensive_passes=true "
                                   "--xla_cpu_use_fusion_emitters=false").strip()
    if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
        _cache = tempfile.mkdtemp(prefix="keras_hiri_jax_cache_")
        atexit.register(shutil.rmtree, _cache, ignore_errors=True)
        os.environ.update(JAX_COMPILATION_CACHE_DIR=_cache,
                          JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
                          JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0")

import keras  # noqa: E402
import pytest

from tests.helpers import turn_off_grappler  # noqa: E402

turn_off_grappler()

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def pytest_report_header(config):
    return f"keras {keras.__version__}, backend {keras.backend.backend()}"


@pytest.fixture(autouse=True)
def _seed():
    keras.utils.set_random_seed(0)
    yield
    # Free each test's models: what stays alive makes later tests of this
    # process slower (a JAX run without it slowed down test by test).
    keras.backend.clear_session()
    # clear_session ends with a full gc.collect, and Keras collects again each
    # time a layer drops a variable (model.quantize: once per Dense). A full
    # collection walks every live object, and the backends' caches grow to
    # ~1.9 M objects (JAX) / ~0.9 M (TensorFlow) within 70 tests, so each
    # collection took seconds (int8 quantize test: 27 s first in a process,
    # 67 s after 65 other tests). What survives the collection above is moved
    # out of the collector's view, so later collections walk only what later
    # tests create: builder + distillation + quantization tests, JAX 415 -> 347 s,
    # TensorFlow 319 -> 259 s (docs/DESIGN.md). Cyclic garbage among frozen
    # objects is not reclaimed; the test process accepts that.
    gc.freeze()


# Tests that do not touch a Keras backend (numpy, pycocotools, argument
# parsing, file formats) are marked ``backend_independent`` and run in one of
# the three per-backend pytest processes only: running them three times tests
# nothing more and costs CI time. Set KERAS_HIRI_ALL_TESTS=1 to run them on
# every backend.
INDEPENDENT_TESTS_BACKEND = "torch"


def pytest_configure(config):
    config.addinivalue_line(
        "markers",
        "backend_independent: does not depend on the Keras backend; runs only in the "
        f"{INDEPENDENT_TESTS_BACKEND} process (KERAS_HIRI_ALL_TESTS=1: everywhere)",
    )
    config.addinivalue_line(
        "markers",
        "runs_in(backend): does not depend on the test process's backend (it checks one backend in "
        "child processes, or its work is cheapest there); runs only in that backend's process "
        "(KERAS_HIRI_ALL_TESTS=1: everywhere)",
    )


def _home(item):
    """The backend whose pytest process runs ``item`` (``None``: every one); a
    test's ``runs_in`` wins over its module's ``backend_independent``."""
    marker = item.get_closest_marker("runs_in")
    if marker:
        return marker.args[0]
    return INDEPENDENT_TESTS_BACKEND if item.get_closest_marker("backend_independent") else None


def pytest_collection_modifyitems(config, items):
    if os.environ.get("KERAS_HIRI_ALL_TESTS"):
        return
    backend = keras.backend.backend()
    dropped = [item for item in items if _home(item) not in (None, backend)]
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = [item for item in items if _home(item) in (None, backend)]
