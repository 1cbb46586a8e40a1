"""keras_hiri.runtime: each process setting does what it says, and only when called."""

import os

import keras
import pytest

from keras_hiri import runtime
from tests.helpers import BLOCK_PAGES, second_malloc_faults, ynn_fusions

# Each check runs in a child process. The allocator's and the other backends'
# run once, in the PyTorch pytest process (backend-independent); the XLA ones are
# JAX's, and run in the JAX pytest process (their children strip its XLA_FLAGS).

LATE = """
import os, jax.numpy as jnp, keras_hiri
(jnp.ones((8, 8)) @ jnp.ones((8, 8))).block_until_ready()  # JAX compiled: XLA has read its flags
try:
    keras_hiri.disable_ynnpack_fusions()
    raise SystemExit("no error")
except RuntimeError as e:
    assert "came too late" in str(e) and "XLA_FLAGS=--xla_cpu_experimental_ynn_fusion_type=" in str(e), e
assert os.environ.get("XLA_FLAGS") == {flags!r}, os.environ.get("XLA_FLAGS")
"""


@pytest.mark.backend_independent
@pytest.mark.skipif(runtime._glibc() is None, reason="the setting is glibc's (Linux)")
def test_freed_memory_is_reused_without_page_faults():
    assert second_malloc_faults("") > BLOCK_PAGES // 2  # glibc's default: the block comes back from the kernel
    assert second_malloc_faults("import keras_hiri\nassert keras_hiri.retain_freed_memory() is True\n") < 100


@pytest.mark.runs_in("jax")
def test_xla_compiles_with_its_own_kernels_after_the_call():
    default, expected = ynn_fusions("")
    assert default >= 1  # jaxlib 0.10 hands this program to YNNPACK
    count, total = ynn_fusions("import keras_hiri\nassert keras_hiri.disable_ynnpack_fusions() is True\n")
    assert count == 0
    assert total == pytest.approx(expected, rel=1e-5)  # other kernels, the same function
    # Called when the flag is already there: nothing is added, and it holds.
    flags = "--xla_cpu_experimental_ynn_fusion_type="
    setup = ("import os, keras_hiri\nassert keras_hiri.disable_ynnpack_fusions() is True\n"
             f"assert os.environ['XLA_FLAGS'] == {flags!r}\n")
    assert ynn_fusions(setup, env={"XLA_FLAGS": flags})[0] == 0
    # keep=("reduce",): the reduction stays a YNNPACK fusion, the matmul and GELU do not.
    setup = ("import os, keras_hiri\nassert keras_hiri.disable_ynnpack_fusions(keep=('reduce',)) is True\n"
             f"assert os.environ['XLA_FLAGS'] == {flags + 'reduce'!r}\n")
    count, total = ynn_fusions(setup)
    assert 0 < count < default
    assert total == pytest.approx(expected, rel=1e-5)


@pytest.mark.backend_independent
@pytest.mark.parametrize("keep", [("dot",), "reduce", ("reduce", "concatenate")])
def test_keep_names_only_the_kinds_that_can_be_kept(keep):
    with pytest.raises(ValueError, match=r"keep must be a sequence of YNNPACK fusion kinds from "
                                         r"\('eltwise', 'reduce'\)\. Received: keep="):
        runtime.disable_ynnpack_fusions(keep=keep)


@pytest.mark.runs_in("jax")
@pytest.mark.parametrize("flags", [None, "--xla_backend_optimization_level=1"])
def test_a_call_after_jax_compiled_raises_and_puts_xla_flags_back(flags):
    env = {"XLA_FLAGS": flags} if flags else None
    assert ynn_fusions(LATE.format(flags=flags), env=env)[0] >= 1


@pytest.mark.runs_in("jax")
def test_another_jaxlib_release_is_left_alone():
    """XLA aborts on a flag it does not know: only the measured release gets it."""
    setup = ("import os, jaxlib, keras_hiri\njaxlib.__version__ = '0.11.0'\n"
             "assert keras_hiri.disable_ynnpack_fusions() is False\nassert 'XLA_FLAGS' not in os.environ\n")
    assert ynn_fusions(setup)[0] >= 1


@pytest.mark.backend_independent
def test_other_backends_are_left_alone():
    assert keras.backend.backend() != "jax"  # backend-independent tests run in the PyTorch process
    before = os.environ.get("XLA_FLAGS")
    assert runtime.disable_ynnpack_fusions() is False
    assert os.environ.get("XLA_FLAGS") == before
