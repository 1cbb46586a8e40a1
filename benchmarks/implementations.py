"""The generic op in place of one of ``keras_hiri.ops``' backend implementations,
for the benchmarks that measure what each implementation gains.

Each implementation is chosen when a layer is built (or, for the host
initialisers, when a weight is drawn), so a model built inside
``generic(name)`` computes that op with ``keras.ops`` on every backend. The
library has no such switch; only benchmarks patch it.
"""

import contextlib

# name: (the keras_hiri.ops function asked at build time, what it returns for the generic op)
IMPLEMENTATIONS = {
    "depthwise": ("use_unrolled_depthwise", False),  # JAX: sum of shifted slices
    "conv": ("use_torch_conv", False),  # PyTorch: torch's conv on the channels-last view
    "init": ("draws_on_host", False),  # JAX: NumPy draws the initial weights
    "attention": ("use_fused_attention", True),  # JAX float16: the explicit form
}


def check_names(names):
    """Raises a ``ValueError`` naming an unknown implementation."""
    unknown = sorted(set(names) - set(IMPLEMENTATIONS))
    if unknown:
        raise ValueError(f"unknown implementation(s) {unknown}; allowed: {sorted(IMPLEMENTATIONS)}")
    return list(names)


@contextlib.contextmanager
def _patched(replacements):
    """Inside, each ``keras_hiri.ops`` function named in ``replacements`` is replaced."""
    from keras_hiri import ops

    saved = {function: getattr(ops, function) for function in replacements}
    for function, replacement in replacements.items():
        setattr(ops, function, replacement)
    try:
        yield
    finally:
        for function, original in saved.items():
            setattr(ops, function, original)


def generic(*names):
    """Inside, layers built (and weights drawn) use the generic op for ``names``."""
    return _patched({IMPLEMENTATIONS[name][0]: (lambda *args, _value=IMPLEMENTATIONS[name][1]: _value)
                     for name in check_names(names)})


def forced_host_draws():
    """Inside, every initialiser with an int seed draws with NumPy, on any backend."""
    return _patched({"draws_on_host": lambda seed: isinstance(seed, int)})
