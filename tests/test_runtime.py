"""keras_hiri.runtime: ``retain_freed_memory`` does what it says to glibc's malloc."""

import subprocess
import sys

import pytest

from keras_hiri import runtime
from tests.helpers import BLOCK_PAGES, SECOND_MALLOC_FAULTS

pytestmark = [
    pytest.mark.backend_independent,
    pytest.mark.skipif(runtime._glibc() is None, reason="the setting is glibc's (Linux)"),
]


def _faults(setup):
    out = subprocess.run([sys.executable, "-c", setup + SECOND_MALLOC_FAULTS],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    return int(out.stdout.split("FAULTS")[-1])


def test_freed_memory_is_reused_without_page_faults():
    assert _faults("") > BLOCK_PAGES // 2  # glibc's default: the block comes back from the kernel
    assert _faults("import keras_hiri\nassert keras_hiri.retain_freed_memory() is True\n") < 100
