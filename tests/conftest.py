import os

# The suite runs thousands of small XLA programs on JAX; compiling them without
# XLA's backend optimisation passes takes less time than those passes save
# (folding + distillation tests: 338 s -> 273 s). Test results do not depend
# on it; benchmarks never run under it.
if os.environ.get("KERAS_BACKEND") == "jax":
    os.environ.setdefault("XLA_FLAGS", "--xla_backend_optimization_level=0")

import keras  # noqa: E402
import pytest

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
