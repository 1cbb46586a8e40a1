"""keras_hiri.runtime: ``retain_freed_memory`` does what it says to glibc's malloc."""

import pytest

from keras_hiri import runtime
from tests.helpers import BLOCK_PAGES, second_malloc_faults

pytestmark = [
    pytest.mark.backend_independent,
    pytest.mark.skipif(runtime._glibc() is None, reason="the setting is glibc's (Linux)"),
]


def test_freed_memory_is_reused_without_page_faults():
    assert second_malloc_faults("") > BLOCK_PAGES // 2  # glibc's default: the block comes back from the kernel
    assert second_malloc_faults("import keras_hiri\nassert keras_hiri.retain_freed_memory() is True\n") < 100
