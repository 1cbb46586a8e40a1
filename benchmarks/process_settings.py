"""Process-wide speed settings the benchmarks can apply (``--retain-freed-memory``, ...).

They change every model and array in the process, not just HIRI-ViT, so they
are no part of the library: a benchmark's worker applies one only when its
option asks for it. docs/performance.md says how a user sets the same thing
(environment variables) and what each measured.
"""

import ctypes
import ctypes.util
import os
import sys

# glibc's mallopt parameters (malloc.h) and the largest value an int takes.
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_LARGEST = 2**31 - 1


def _glibc():
    """glibc's ``libc``, or ``None`` (another OS, or another C library: musl)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None
    return libc if hasattr(libc, "gnu_get_libc_version") else None  # glibc only


def retain_freed_memory():
    """Keeps freed memory in the process instead of handing it back to the OS.

    glibc's ``malloc`` serves each block above its mmap threshold (at most
    32 MiB, and moved by the process's history) with fresh pages from the
    kernel and returns them on ``free``, so a model whose activations are
    plain ``malloc`` blocks (PyTorch's CPU tensors) page-faults and zeroes them
    anew on every call. This raises that threshold and the heap's trim
    threshold to 2 GiB (``mallopt``; what the ``MALLOC_MMAP_THRESHOLD_`` and
    ``MALLOC_TRIM_THRESHOLD_`` environment variables do, but callable after
    the process started): blocks up to 2 GiB then come from the heap, and
    freed ones are reused.

    Effect: an HIRI-ViT-S@448 forward on PyTorch (batch 8) goes from ~86 k
    minor page faults to ~700 and runs 1.18x faster on a 2-core CPU
    (``benchmarks/throughput.py --alternate-retain``; docs/RESULTS.md);
    TensorFlow and JAX allocate their activations themselves and do not
    change. Cost: the process keeps its peak heap (memory it frees is not
    returned to the OS until it exits: S@448's steady peak 565 -> 632 MiB),
    and it applies to everything in the process. It affects the allocations
    made after the call.

    Returns:
        ``True`` where applied (Linux with glibc); ``False`` elsewhere, where
        nothing changes.
    """
    libc = _glibc()
    if libc is None:
        return False
    return bool(libc.mallopt(_M_MMAP_THRESHOLD, _LARGEST)) and bool(libc.mallopt(_M_TRIM_THRESHOLD, _LARGEST))


# The XLA flag that lists the kinds of op XLA may hand to YNNPACK's fusions
# ("dot", "eltwise", "reduce"; an empty list: none), and the kinds a caller may
# keep.
_YNN_FUSION_TYPES = "--xla_cpu_experimental_ynn_fusion_type="
_KEEPABLE = ("eltwise", "reduce")
# The jaxlib releases keras_hiri's XLA options were measured on: XLA aborts the
# process on a flag it does not know and rejects an unknown compile option, so
# another jaxlib is left alone.
_MEASURED_JAXLIB = ("0.10.",)


def on_measured_jaxlib():
    """Whether the installed jaxlib is a release keras_hiri's XLA options (the
    flag of :func:`disable_ynnpack_fusions`, the compile option of the
    ``executable`` kernel switch) were measured on."""
    import jaxlib

    return jaxlib.__version__.startswith(_MEASURED_JAXLIB)


def _compiles_ynn_fusions():
    """Whether XLA gives a small matmul on the CPU to a YNNPACK fusion now."""
    import jax
    import jax.numpy as jnp

    x = jax.device_put(jnp.ones((32, 32), "float32"), jax.devices("cpu")[0])
    return "__ynn_fusion" in jax.jit(lambda a: a @ a).lower(x).compile().as_text()


def disable_ynnpack_fusions(keep=()):
    """Has XLA compile JAX programs for the CPU with its own kernels instead of
    handing matmuls, convolutions and element-wise chains to YNNPACK's fusions.

    jaxlib 0.10's CPU compiler gives those fusions the scalar constants of an
    element-wise chain (GELU's 1/sqrt(2), the attention scale, the depthwise
    taps) as operands materialised to the whole activation's shape, and each
    stays alive across a stage: for HIRI-ViT-S@448 at batch 8, half of the
    compiled inference's live memory at its peak (the ``fence`` kernel
    switch, on by default there, now keeps most of them out: 210 -> 118
    MiB). With XLA's own kernels, S@448 on a 2-core CPU runs ~1.3x faster
    than fenced (1.4x before the fence) and its compiled temporaries are
    111 MiB; ConvNeXt-T, whose 7x7 depthwise convolutions
    need YNNPACK, runs slower. **Training gets slower**: a training step of
    S@448 (forward, backward, AdamW) took 2x as long (7.55 -> 15.04 s), so
    this is for processes that only infer (docs/RESULTS.md, "XLA's own CPU
    kernels as one call"). ``keep=("reduce",)`` leaves the reductions to
    YNNPACK: training then runs faster than with XLA's defaults (S@448's step
    6.58 -> 4.39 s) and inference 1.2-1.4x faster (docs/RESULTS.md, "Keeping
    YNNPACK's reductions"); the ``keras-hiri`` command makes that call.
    It applies to every JAX program the process compiles for the CPU.

    XLA reads its flags (``XLA_FLAGS``) once, when JAX compiles its first
    program, so call this before anything runs on JAX (importing Keras and
    keras_hiri is fine; building a model is not). It appends the flag to
    ``XLA_FLAGS`` and checks that a probe compile (a matmul) has no YNNPACK
    fusion.

    Args:
        keep: the kinds of YNNPACK fusion to keep, from ``("eltwise",
            "reduce")``; matmuls and convolutions always go to XLA's kernels.

    Returns:
        ``True`` where applied (the JAX backend with jaxlib 0.10, the release
        it was measured on; on another release an unknown flag would abort
        the process); ``False`` elsewhere, where nothing changes.

    Raises:
        ValueError: ``keep`` names a kind not in ``("eltwise", "reduce")``.
        RuntimeError: JAX compiled a program before the call, so XLA has
            read its flags; ``XLA_FLAGS`` is put back as it was.
    """
    if isinstance(keep, str) or any(kind not in _KEEPABLE for kind in keep):
        raise ValueError(
            f"keep must be a sequence of YNNPACK fusion kinds from {_KEEPABLE}. Received: keep={keep!r}")
    flag = _YNN_FUSION_TYPES + ",".join(sorted(set(keep)))
    import keras

    if keras.backend.backend() != "jax" or not on_measured_jaxlib():
        return False
    before = os.environ.get("XLA_FLAGS")
    if flag not in (before or "").split():
        os.environ["XLA_FLAGS"] = f"{before or ''} {flag}".strip()
    if _compiles_ynn_fusions():
        if before is None:
            del os.environ["XLA_FLAGS"]
        else:
            os.environ["XLA_FLAGS"] = before
        raise RuntimeError(
            "keras_hiri.disable_ynnpack_fusions() came too late: JAX has already compiled a program in "
            "this process, and XLA read its flags then. Call it before building a model or running "
            f"anything on JAX, or start the process with XLA_FLAGS={flag}")
    return True
