"""Kernel switches: the one place where a backend decides how an op computes.

Model code calls :func:`gelu`, :func:`attention`, :func:`conv`,
:func:`depthwise_conv` and asks :func:`use_unrolled_depthwise`; everything else is backend-agnostic
``keras.ops``. Each switch has a generic implementation and a faster one for
some backend, chosen by ``"auto"`` only where it was measured faster (or where
the generic op fails), and ``tests/test_kernels.py`` checks that every
implementation equals the generic one on every backend, eager and compiled.
Like timm's ``layers/config.py``, the switches are process-wide and read when
a model is traced or compiled.

=============  ==================  ==============================================
switch         implementations     ``"auto"`` picks
=============  ==================  ==============================================
``gelu``       ``erf``, ``fused``  ``fused`` (``ops.gelu``) on PyTorch, 5x faster
                                   than the erf form's four eager ops; ``erf``
                                   elsewhere (TensorFlow lowers ``ops.gelu`` to
                                   ``erfc``, which ONNX lacks)
``depthwise``  ``native``,         ``unrolled`` on JAX with CPU devices (XLA's
               ``unrolled``        grouped conv is 10-80x slower there);
                                   ``native`` elsewhere
``attention``  ``fused``,          ``explicit`` for float16 on JAX (XLA's CPU
               ``explicit``        backend refuses the f16 x f16 -> f32 dot of
                                   ``ops.dot_product_attention``); ``fused``
                                   elsewhere
``conv``       ``ops``,            ``torch_nhwc`` on PyTorch: torch's conv on
               ``torch_nhwc``      the channels-last *view* of the NHWC tensor
                                   (no copies; ``keras.ops.conv`` copies the
                                   input to NCHW and back to channels-last
                                   memory around every convolution): S@448
                                   1.85x faster (``docs/RESULTS.md``); ``ops``
                                   elsewhere (the only implementation there)
=============  ==================  ==============================================

``python benchmarks/kernels.py`` measures the speed claims.
"""

import keras
from keras import ops

SWITCHES = {
    "gelu": ("auto", "erf", "fused"),
    "depthwise": ("auto", "native", "unrolled"),
    "attention": ("auto", "fused", "explicit"),
    "conv": ("auto", "ops", "torch_nhwc"),
}
_chosen = {name: "auto" for name in SWITCHES}


def set_kernel(name, implementation):
    """Sets switch ``name`` to ``implementation`` (see the module table)."""
    if name not in SWITCHES:
        raise ValueError(f"Unknown kernel switch {name!r}. Allowed: {sorted(SWITCHES)}")
    if implementation not in SWITCHES[name]:
        raise ValueError(
            f"implementation must be one of {SWITCHES[name]} for {name!r}. "
            f"Received: {implementation!r}"
        )
    _chosen[name] = implementation


def get_kernel(name):
    """The setting of switch ``name`` (``"auto"`` unless set)."""
    if name not in SWITCHES:
        raise ValueError(f"Unknown kernel switch {name!r}. Allowed: {sorted(SWITCHES)}")
    return _chosen[name]


def _on_jax_cpu():
    if keras.backend.backend() != "jax":
        return False
    return all(d.split(":")[0] == "cpu" for d in keras.distribution.list_devices())


def resolve(name, dtype=None):
    """The implementation switch ``name`` runs now (``"auto"`` resolved)."""
    chosen = get_kernel(name)
    if chosen != "auto":
        return chosen
    backend = keras.backend.backend()
    if name == "gelu":
        return "fused" if backend == "torch" else "erf"
    if name == "depthwise":
        return "unrolled" if _on_jax_cpu() else "native"
    if name == "conv":
        return "torch_nhwc" if backend == "torch" else "ops"
    return "explicit" if backend == "jax" and dtype == "float16" else "fused"


_INV_SQRT2 = 0.7071067811865476


def gelu(x):
    """Exact GELU, ``0.5 x (1 + erf(x / sqrt 2))`` (``torch.nn.GELU()``)."""
    if resolve("gelu") == "fused":
        return ops.gelu(x, approximate=False)
    return 0.5 * x * (1.0 + ops.erf(x * _INV_SQRT2))


def use_unrolled_depthwise():
    return resolve("depthwise") == "unrolled"


def attention(q, k, v):
    """``softmax(q k^T / sqrt(d)) v`` on ``(B, N, heads, d)`` tensors."""
    if resolve("attention", keras.backend.standardize_dtype(q.dtype)) == "fused":
        return ops.dot_product_attention(q, k, v)
    scale = 1.0 / float(q.shape[-1]) ** 0.5
    q, k, v = (ops.transpose(t, (0, 2, 1, 3)) for t in (q, k, v))  # (B, heads, N, d)
    logits = ops.matmul(q, ops.transpose(k, (0, 1, 3, 2))) * ops.cast(scale, q.dtype)
    weights = ops.cast(ops.softmax(ops.cast(logits, "float32"), axis=-1), v.dtype)
    return ops.transpose(ops.matmul(weights, v), (0, 2, 1, 3))


def _use_torch_conv(kernel_size, strides, padding, dilation_rate):
    if resolve("conv") != "torch_nhwc":
        return False
    if keras.backend.backend() != "torch":
        raise ValueError(
            "kernel 'conv' = 'torch_nhwc' needs the torch backend. "
            f"Received backend: {keras.backend.backend()!r}; use 'auto' or 'ops'."
        )
    # "same" is symmetric padding only for odd kernels at stride 1.
    return padding == "valid" or (
        tuple(strides) == (1, 1) and all(k % 2 == 1 for k in kernel_size)
    )


def _torch_conv(x, weight, strides, padding, dilation_rate, kernel_size):
    """torch's conv2d on the NCHW view of NHWC ``x`` (channels-last memory),
    with ``weight`` in torch's ``(out, in / groups, kh, kw)`` layout."""
    import torch

    weight = weight.contiguous(memory_format=torch.channels_last)
    pad = 0 if padding == "valid" else tuple(
        d * (k - 1) // 2 for k, d in zip(kernel_size, dilation_rate)
    )
    y = torch.nn.functional.conv2d(
        x.permute(0, 3, 1, 2), weight, stride=tuple(strides), padding=pad,
        dilation=tuple(dilation_rate), groups=x.shape[-1] // weight.shape[1],
    )
    return y.permute(0, 2, 3, 1)


def conv(x, kernel, strides=(1, 1), padding="valid", dilation_rate=(1, 1)):
    """``keras.ops.conv`` of an NHWC ``x`` with a ``(kh, kw, in, out)`` kernel."""
    return _conv(x, kernel, strides, padding, dilation_rate, depthwise=False)


def depthwise_conv(x, kernel, strides=(1, 1), padding="valid", dilation_rate=(1, 1)):
    """``keras.ops.depthwise_conv`` of an NHWC ``x``, ``(kh, kw, in, multiplier)`` kernel."""
    return _conv(x, kernel, strides, padding, dilation_rate, depthwise=True)


def _conv(x, kernel, strides, padding, dilation_rate, depthwise):
    kernel_size = tuple(kernel.shape[:2])
    if not _use_torch_conv(kernel_size, strides, padding, dilation_rate):
        op = ops.depthwise_conv if depthwise else ops.conv
        return op(x, kernel, strides=strides, padding=padding, dilation_rate=dilation_rate,
                  data_format="channels_last")
    kernel = ops.convert_to_tensor(kernel)
    if depthwise:  # (in * multiplier, 1, kh, kw)
        weight = kernel.reshape(*kernel_size, 1, -1).permute(3, 2, 0, 1)
    else:  # (out, in, kh, kw)
        weight = kernel.permute(3, 2, 0, 1)
    return _torch_conv(ops.convert_to_tensor(x), weight, strides, padding, dilation_rate,
                       kernel_size)
