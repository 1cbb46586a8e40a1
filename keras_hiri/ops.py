"""The backend-specific op implementations: four, each chosen when a layer is built.

Everything else in keras_hiri is ``keras.ops``. An implementation lives here
only if the generic op is wrong on some backend or it makes the whole model
>= 1.10x faster there (``docs/performance.md``), and ``tests/test_ops.py``
checks each against the generic op on every backend:

==========================  =====================  ================================================
implementation              where                  why
==========================  =====================  ================================================
unrolled depthwise conv     JAX on CPU devices     XLA's CPU grouped convolution is 10-80x slower
                                                   than a sum of shifted slices (HIRI-ViT-S@448
                                                   2.5x, docs/performance.md)
explicit attention          JAX, float16           XLA's CPU backend refuses the f16 x f16 -> f32
                                                   dot of ``ops.dot_product_attention``
channels-last torch conv    PyTorch                ``keras.ops.conv`` copies NHWC to NCHW and back
                                                   around every convolution; torch's conv on the
                                                   channels-last view makes none (S@448 1.85x)
host weight sampling        JAX                    Keras' samplers compile an XLA program per
                                                   kernel shape (S's first build 11.7 -> 2.2 s)
==========================  =====================  ================================================

Like timm's ``use_fused_attn()``, each ``use_*`` function is asked when a layer
is built (or, for the initialisers, when a weight is drawn), never per call.
"""

import keras
import numpy as np
from keras import ops


def _backend():
    return keras.backend.backend()


def use_unrolled_depthwise():
    """Whether a depthwise convolution built now runs as a sum of shifted
    slices: on JAX when every device is a CPU."""
    if _backend() != "jax":
        return False
    return all(d.split(":")[0] == "cpu" for d in keras.distribution.list_devices())


def use_fused_attention(dtype):
    """Whether attention in ``dtype`` may use ``keras.ops.dot_product_attention``
    (not for float16 on JAX, whose CPU backend refuses it)."""
    return not (_backend() == "jax" and keras.backend.standardize_dtype(dtype) == "float16")


def use_torch_conv():
    """Whether convolutions run as torch's conv on the channels-last view."""
    return _backend() == "torch"


def attention(q, k, v, fused=True):
    """``softmax(q k^T / sqrt(d)) v`` on ``(B, N, heads, d)`` tensors; the
    explicit form (``fused=False``) takes the softmax in float32."""
    if fused:
        return ops.dot_product_attention(q, k, v)
    scale = 1.0 / float(q.shape[-1]) ** 0.5
    q, k, v = (ops.transpose(t, (0, 2, 1, 3)) for t in (q, k, v))  # (B, heads, N, d)
    logits = ops.matmul(q, ops.transpose(k, (0, 1, 3, 2))) * ops.cast(scale, q.dtype)
    weights = ops.cast(ops.softmax(ops.cast(logits, "float32"), axis=-1), v.dtype)
    return ops.transpose(ops.matmul(weights, v), (0, 2, 1, 3))


def _pad_amounts(size, kernel, stride, padding):
    """``(before, after)`` zeros on one axis: Keras' ``"same"`` (an odd zero
    after), an int on both sides, or none for ``"valid"``."""
    if padding == "same":
        total = max((-(-size // stride) - 1) * stride + kernel - size, 0)
        return total // 2, total - total // 2
    return (0, 0) if padding == "valid" else (padding, padding)


def conv(x, kernel, strides, padding, bias=None, depthwise=False, add_input=False,
         implementation="ops"):
    """The convolution of an NHWC ``x`` with a Keras kernel (``(kh, kw, in, out)``,
    or ``(kh, kw, in, 1)`` for ``depthwise``), plus ``bias``, plus ``x`` itself
    with ``add_input``. ``padding``: ``"valid"``, ``"same"`` or an int ``p``
    (``p`` zeros on every side, PyTorch's rule). ``implementation``: ``"ops"``
    (``keras.ops``), ``"unrolled"`` (depthwise only, static grid) or ``"torch"``."""
    if implementation == "torch" and not _compiling_torch():
        return _torch_conv(x, kernel, bias, strides, padding, depthwise, add_input)
    if implementation == "unrolled":
        out = _unrolled_depthwise(x, kernel, strides, padding)
    else:
        padded = x
        if isinstance(padding, int):
            padded = ops.pad(x, ((0, 0), (padding, padding), (padding, padding), (0, 0)))
        op = ops.depthwise_conv if depthwise else ops.conv
        out = op(padded, kernel, strides=strides, padding="same" if padding == "same" else "valid",
                 data_format="channels_last")
    # ``+``, not ``ops.add``: on TensorFlow a BiasAdd after a depthwise conv and
    # the Add after it are fused by Grappler's remapper into a node with no op
    # ("... has an empty op name"); ``+`` stays an AddV2 (tests/test_examples.py).
    if bias is not None:
        out = out + ops.cast(bias, out.dtype)
    return out + x if add_input else out


def _unrolled_depthwise(x, kernel, strides, padding):
    kh, kw = kernel.shape[:2]
    (sh, sw) = strides
    (top, bottom), (left, right) = (_pad_amounts(n, k, s, padding)
                                    for n, k, s in zip(x.shape[1:3], (kh, kw), (sh, sw)))
    if top or bottom or left or right:
        x = ops.pad(x, ((0, 0), (top, bottom), (left, right), (0, 0)))
    ho, wo = (x.shape[1] - kh) // sh + 1, (x.shape[2] - kw) // sw + 1
    kernel = ops.cast(kernel, x.dtype)
    out = None
    for i in range(kh):
        for j in range(kw):
            window = x[:, i:i + sh * (ho - 1) + 1:sh, j:j + sw * (wo - 1) + 1:sw, :]
            term = window * kernel[i, j, :, 0]
            out = term if out is None else out + term
    return out


def _compiling_torch():
    """Under torch.compile Inductor fuses padding and bias itself, and fails to
    lower a conv with the padding inside on dynamic shapes: the generic path."""
    import torch

    return torch.compiler.is_compiling()


def _torch_conv(x, kernel, bias, strides, padding, depthwise, add_input):
    """torch's conv2d on the NCHW view of NHWC ``x`` (channels-last memory, no
    copies); the bias, the zero padding and ``+ x`` (a 1 added to the centre
    tap) inside the one call."""
    import torch

    kh, kw = kernel.shape[:2]
    kernel = ops.convert_to_tensor(kernel)
    weight = kernel.reshape(kh, kw, 1, -1) if depthwise else kernel
    weight = weight.permute(3, 2, 0, 1)  # (out, in / groups, kh, kw)
    if add_input:
        weight = weight.clone()
        weight[:, :, kh // 2, kw // 2] += 1
    x = ops.convert_to_tensor(x)
    if padding == "same" and not (tuple(strides) == (1, 1) and kh % 2 == kw % 2 == 1):
        (top, bottom), (left, right) = (_pad_amounts(n, k, s, padding)
                                        for n, k, s in zip(x.shape[1:3], (kh, kw), strides))
        x = torch.nn.functional.pad(x, (0, 0, left, right, top, bottom))
        padding = 0
    pad = (kh // 2, kw // 2) if padding == "same" else 0 if padding == "valid" else padding
    y = torch.nn.functional.conv2d(
        x.permute(0, 3, 1, 2), weight.contiguous(memory_format=torch.channels_last),
        None if bias is None else ops.convert_to_tensor(bias), stride=tuple(strides),
        padding=pad, groups=x.shape[-1] // weight.shape[1])
    return y.permute(0, 2, 3, 1)


def draws_on_host(seed):
    """Whether an initialiser with ``seed`` draws its normal samples with NumPy:
    an int seed, on JAX, outside a JAX trace (where Keras' sampler traces a
    throw-away placeholder at no cost)."""
    if not isinstance(seed, int) or _backend() != "jax":
        return False
    import jax

    return not isinstance(jax.numpy.zeros(()), jax.core.Tracer)


def host_normal(seed, shape, truncated, mean, stddev, dtype):
    """``normal(mean, stddev)`` samples drawn by NumPy from an int ``seed`` in
    float32 (float64 for a float64 ``dtype``), as a backend tensor of
    ``dtype``; ``truncated`` redraws standard samples beyond two standard
    deviations (as ``keras.random.truncated_normal``)."""
    dtype = keras.backend.standardize_dtype(dtype or keras.config.floatx())
    rng = np.random.default_rng(seed % 2**64)  # NumPy takes non-negative seeds; Keras any int
    sample_dtype = np.float64 if dtype == "float64" else np.float32
    values = rng.standard_normal(shape, dtype=sample_dtype)
    if truncated:  # one pass over the whole array, then only over what was redrawn
        flat = values.reshape(-1)
        outside = np.flatnonzero(np.abs(flat) > 2.0)
        while outside.size:
            redrawn = rng.standard_normal(outside.size, dtype=sample_dtype)
            flat[outside] = redrawn
            outside = outside[np.abs(redrawn) > 2.0]
    values *= stddev
    if mean:
        values += mean
    return ops.convert_to_tensor(values.astype(dtype, copy=False), dtype=dtype)
