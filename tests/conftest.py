import gc
import os

import keras
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def pytest_report_header(config):
    return f"keras {keras.__version__}, backend {keras.backend.backend()}"


@pytest.fixture(autouse=True)
def _seed():
    keras.utils.set_random_seed(0)
    yield
    # Free each test's models: what stays alive makes every later garbage
    # collection (and, on JAX, every later eager op) slower in this process.
    keras.backend.clear_session()
    gc.collect()
