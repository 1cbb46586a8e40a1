"""Process-wide speed settings, applied only when asked for.

They change every model and array in the process, not just HIRI-ViT, so
importing keras_hiri never applies them; the ``keras-hiri`` command (an
application that owns its process) does, and a script or notebook can with one
call. Measured in docs/RESULTS.md ("The allocator setting as one call").
"""

import ctypes
import ctypes.util
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
