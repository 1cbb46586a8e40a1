"""Kernel switches: the one place where a backend decides how an op computes.

Model code calls :func:`gelu`, :func:`attention`, :func:`conv`,
:func:`depthwise_conv`, :func:`dense`, :func:`batch_norm`, :func:`fence`,
:func:`per_image`, :func:`own_executable_call` and asks
:func:`use_unrolled_depthwise`, :func:`use_host_sampling`,
:func:`fold_bn_at_call` and :func:`uses_own_executable`; everything else is backend-agnostic
``keras.ops``. Each switch has a generic implementation and a faster one for
some backend, chosen by ``"auto"`` only where it was measured faster (or where
the generic op fails; ``network`` and ``executable``, for memory, are the
exceptions), and
``tests/test_kernels.py`` checks that every
implementation equals the generic one on every backend, eager and compiled.
Like timm's ``layers/config.py``, the switches are process-wide and read when
a model is traced or compiled.

=============  ======================  ==============================================
switch         implementations         ``"auto"`` picks
=============  ======================  ==============================================
``gelu``       ``erf``, ``fused``      ``fused`` (``ops.gelu``) on PyTorch, 5x faster
                                       than the erf form's four eager ops; ``erf``
                                       elsewhere (TensorFlow lowers ``ops.gelu`` to
                                       ``erfc``, which ONNX lacks)
``depthwise``  ``native``,             ``unrolled`` on JAX with CPU devices (XLA's
               ``unrolled``            grouped conv is 10-80x slower there);
                                       ``native`` elsewhere
``attention``  ``fused``,              ``explicit`` for float16 on JAX (XLA's CPU
               ``explicit``            backend refuses the f16 x f16 -> f32 dot of
                                       ``ops.dot_product_attention``); ``fused``
                                       elsewhere
``conv``       ``ops``,                ``torch_nhwc`` on PyTorch: torch's conv on
               ``torch_nhwc``          the channels-last *view* of the NHWC tensor
                                       (no copies; ``keras.ops.conv`` copies the
                                       input to NCHW and back to channels-last
                                       memory around every convolution): S@448
                                       1.85x faster (``docs/RESULTS.md``); the
                                       bias, the symmetric zero padding of strided
                                       convs and the CFFN's ``+ z`` (a 1 added to the
                                       depthwise kernel's centre tap) go into that one
                                       call instead of three extra passes; ``ops``
                                       elsewhere (the only implementation there)
``dense``      ``ops``,                ``torch_addmm`` on PyTorch (the bias is the
               ``torch_addmm``         GEMM's initial output, no second pass);
                                       ``ops`` elsewhere
``batchnorm``  ``ops``,                ``torch_affine`` on PyTorch: inference BN as
               ``torch_affine``,       one ``addcmul`` (Keras' torch op makes three
               ``centered``            passes); ``centered`` on JAX:
                                       ``(x - mean) * (scale / sqrt(var + eps)) +
                                       offset``, whose weight-side part is one
                                       vector where Keras' op computes three: XLA
                                       hoists them out of the ``network`` switch's
                                       per-image loop as separate kernels (S@448:
                                       587 -> 535 compiled fusions, the compiler's
                                       peak about 40 MiB lower, the same speed);
                                       ``ops`` on TensorFlow (grappler fuses the
                                       passes itself)
``init``       ``keras``,              ``host`` on JAX: the weights' normal draws
               ``host``                made by NumPy (``common.TruncatedNormal``,
                                       ``common.VarianceScaling``); Keras' samplers
                                       compile XLA programs per kernel shape there
                                       (HIRI-ViT-S's first build 11.7 -> 2.2 s);
                                       ``keras`` elsewhere (Keras' own sampler: on
                                       PyTorch the host draw made S's build 1.4-1.6
                                       -> 1.8 s, on TensorFlow no faster)
``conv_bn``    ``layers``,             ``folded`` on PyTorch and TensorFlow: in
               ``folded``              inference, a BatchNorm right after a
                                       convolution is folded into its kernel and
                                       bias at call time (one convolution instead of
                                       a convolution, a BN pass over the map and two
                                       layer calls): S@448 1.07x faster on PyTorch,
                                       1.03x on TensorFlow; ``layers`` on JAX, where
                                       XLA fuses the BN itself (0.97x folded)
``fence``      ``none``,               ``reduce_precision`` on JAX with CPU devices:
               ``reduce_precision``    the unrolled depthwise sum and the GELU's
                                       ``Phi(x)`` end in an identity XLA's YNNPACK
                                       fusions do not take in, so XLA's own loop
                                       fusion computes them with their constants and
                                       slices inline instead of materialising them
                                       as whole-map operands of a library fusion:
                                       S@448's compiled temporaries 210 -> 118 MiB
                                       (``benchmarks/xla_memory.py``), 1.07x
                                       faster; inference only (training 5-10 %
                                       slower fenced); ``none`` elsewhere
                                       (nothing to fence)
``stem``       ``batched``,            ``per_image`` where the backend computes on
               ``per_image``           one CPU device alone, in inference: the HR
                                       stem runs on one image at a time
                                       (``keras.ops.map``), so its full-grid maps
                                       are one image's, not the batch's, and stay in
                                       the cache: S@448 1.12x faster on JAX (compiled
                                       temporaries 118 -> 86 MiB), 1.04x on
                                       TensorFlow and PyTorch, its steady peak
                                       39-130 MiB smaller; ``batched`` on
                                       accelerators, for a batch of unknown size and in
                                       training (BatchNorm's batch statistics need
                                       the whole batch)
``network``    ``batched``,            ``per_image`` on JAX on one CPU device alone,
               ``per_image``           in inference: the whole network (a
                                       ``HiriViTModel``'s call) runs on one image at a
                                       time, so XLA's temporaries are one image's
                                       (S@448: 86 -> 15 MiB), at 0.98x the speed:
                                       chosen for memory, not speed;
                                       ``batched`` elsewhere (TensorFlow: no smaller
                                       and no faster; PyTorch: a Python loop over
                                       every layer call per image), for a batch of
                                       unknown size and in training
``executable`` ``keras``, ``own``,     ``lean`` on JAX on one CPU device: a
               ``lean``                ``HiriViTModel``'s eager inference call runs as
                                       the model's own XLA executable (compiled once
                                       per input shape) instead of op by op (``own``
                                       and ``lean``: S@448's ``model(x)`` 4.6x
                                       faster), and with ``lean`` that executable is
                                       compiled with XLA's older fusion emitters and
                                       ``predict``'s step calls it eagerly instead of
                                       Keras compiling the step: the option Keras'
                                       compiled step cannot pass takes S@448's
                                       first-call peak below ConvNeXt-T's (M 1.22 ->
                                       0.92), at 0.92x the speed: chosen for memory;
                                       ``own`` keeps Keras' compiled ``predict``;
                                       ``keras`` elsewhere and for a model set to
                                       ``run_eagerly``
=============  ======================  ==============================================

``python benchmarks/kernels.py`` measures the speed claims op by op;
``python benchmarks/throughput.py --kernel-pair SWITCH`` times a whole model under
each implementation of a switch, paired in one process (``conv_bn``'s and
``fence``'s figures); ``python benchmarks/xla_memory.py`` reads XLA's buffers.
"""

import weakref

import keras
from keras import ops

from keras_hiri import runtime

SWITCHES = {
    "gelu": ("auto", "erf", "fused"),
    "depthwise": ("auto", "native", "unrolled"),
    "attention": ("auto", "fused", "explicit"),
    "conv": ("auto", "ops", "torch_nhwc"),
    "dense": ("auto", "ops", "torch_addmm"),
    "batchnorm": ("auto", "ops", "torch_affine", "centered"),
    "init": ("auto", "keras", "host"),
    "conv_bn": ("auto", "layers", "folded"),
    "fence": ("auto", "none", "reduce_precision"),
    "stem": ("auto", "batched", "per_image"),
    "network": ("auto", "batched", "per_image"),
    "executable": ("auto", "keras", "own", "lean"),
}
_chosen = {name: "auto" for name in SWITCHES}
# Implementations that only one backend has: setting one on another backend is an error at once.
_BACKEND_ONLY = {
    ("conv", "torch_nhwc"): "torch", ("dense", "torch_addmm"): "torch",
    ("batchnorm", "torch_affine"): "torch", ("fence", "reduce_precision"): "jax",
    ("executable", "own"): "jax", ("executable", "lean"): "jax",
}


def set_kernel(name, implementation):
    """Sets switch ``name`` to ``implementation`` (see the module table).
    Raises a ``ValueError`` for an unknown switch or implementation, and for
    one that only another backend has (``torch_*`` off PyTorch,
    ``reduce_precision`` off JAX)."""
    if name not in SWITCHES:
        raise ValueError(f"Unknown kernel switch {name!r}. Allowed: {sorted(SWITCHES)}")
    if implementation not in SWITCHES[name]:
        raise ValueError(
            f"implementation must be one of {SWITCHES[name]} for {name!r}. "
            f"Received: {implementation!r}"
        )
    if (name, implementation) in _BACKEND_ONLY:
        _needs(_BACKEND_ONLY[name, implementation], name, implementation)
    _chosen[name] = implementation


def implementations(name):
    """The implementations of switch ``name`` that this backend has, ``"auto"``
    left out (those :func:`set_kernel` accepts here)."""
    get_kernel(name)  # the unknown-switch error
    backend = keras.backend.backend()
    return [i for i in SWITCHES[name][1:] if _BACKEND_ONLY.get((name, i), backend) == backend]


def get_kernel(name):
    """The setting of switch ``name`` (``"auto"`` unless set)."""
    if name not in SWITCHES:
        raise ValueError(f"Unknown kernel switch {name!r}. Allowed: {sorted(SWITCHES)}")
    return _chosen[name]


def _on_jax_cpu():
    if keras.backend.backend() != "jax":
        return False
    return all(d.split(":")[0] == "cpu" for d in keras.distribution.list_devices())


def _on_one_cpu():
    """Whether the backend computes on the host's CPU alone: one CPU device
    (a loop over a batch sharded across devices would gather it), no
    accelerator PyTorch would place tensors on."""
    if keras.backend.backend() == "torch":
        import torch

        return not (torch.cuda.is_available() or torch.backends.mps.is_available())
    return keras.distribution.list_devices() == ["cpu:0"]


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
    if name == "dense":
        return "torch_addmm" if backend == "torch" else "ops"
    if name == "batchnorm":
        return {"torch": "torch_affine", "jax": "centered"}.get(backend, "ops")
    if name == "init":
        return "host" if backend == "jax" else "keras"
    if name == "conv_bn":
        return "folded" if backend in ("torch", "tensorflow") else "layers"
    if name == "fence":
        return "reduce_precision" if _on_jax_cpu() else "none"
    if name == "stem":
        return "per_image" if _on_one_cpu() else "batched"
    if name == "network":
        return "per_image" if backend == "jax" and _on_one_cpu() else "batched"
    if name == "executable":
        return "lean" if backend == "jax" and _on_one_cpu() else "keras"
    return "explicit" if backend == "jax" and dtype == "float16" else "fused"


_INV_SQRT2 = 0.7071067811865476


def gelu(x, training=False):
    """Exact GELU, ``0.5 x (1 + erf(x / sqrt 2))`` (``torch.nn.GELU()``).

    The ``erf`` implementation computes it as ``x (0.5 + 0.5 erf(x / sqrt 2))``:
    the same speed, and with jaxlib 0.10 at XLA's defaults HIRI-ViT-S@448's
    compiled inference needs 210 MiB of temporaries instead of 246 (XLA's
    YNNPACK fusions materialise fewer broadcast constants; training's are
    unchanged; ``benchmarks/xla_memory.py``, docs/RESULTS.md); ``Phi(x)`` ends
    in a :func:`fence` unless ``training``."""
    if resolve("gelu") == "fused":
        return ops.gelu(x, approximate=False)
    return x * fence(0.5 + 0.5 * ops.erf(x * _INV_SQRT2), training)


def fence(x, training=False):
    """``x`` itself, computed where XLA's CPU library fusions stop (the
    ``fence`` switch).

    jaxlib 0.10's CPU compiler hands convolutions and matmuls to YNNPACK
    fusions together with the element-wise work around them, and a library
    fusion takes what it cannot compute itself (slices, broadcast scalar
    constants) as operands materialised to the whole activation's shape; XLA
    keeps each alive from where it is made to its last use. With
    ``reduce_precision`` (an exact identity at the dtype's own exponent and
    mantissa widths, which YNNPACK does not take and XLA does not remove) the
    element-wise chain before it stays in XLA's own loop fusion, with its
    slices and constants inline. ``none`` returns ``x``, and so does a
    ``training`` pass (a training step of S@448 on JAX was 5-10 % slower
    fenced: the backward pass has its own fusions, docs/RESULTS.md)."""
    implementation = resolve("fence")
    if implementation == "none" or training or isinstance(x, keras.KerasTensor):
        return x
    _needs("jax", "fence", implementation)
    import jax

    finfo = jax.numpy.finfo(x.dtype)
    return jax.lax.reduce_precision(x, exponent_bits=finfo.nexp, mantissa_bits=finfo.nmant)


def per_image(fn, x, training=False, switch="stem"):
    """``fn(x)`` for a batch ``x``, computed one image at a time where the
    switch ``switch`` (``"stem"`` or ``"network"``) says ``per_image``
    (``keras.ops.map`` over the batch axis, each image a batch of one), in one
    batched call otherwise and always in training (a BatchNorm in ``fn`` needs
    the whole batch's statistics then). ``fn`` must treat the images
    independently, as every inference layer does; its output may be a nest of
    tensors with the batch first.

    XLA neither tiles a convolution nor frees a map before its last reader, so
    the HR stem's full-grid maps (two ``B x H/2 x W/2 x C1`` maps live at once,
    plus the copy YNNPACK pads) cost the whole batch's memory at its peak; one
    image at a time they cost one image's, and the maps stay in the cache.
    Under torch.compile it is the batched call: PyTorch's loop would be
    unrolled into one copy of ``fn`` per image (``tests/test_kernels.py``'s
    tiny model at three images: 51 s per image against 32 s batched, compile
    included), and Inductor plans the buffers itself."""
    if switch not in ("stem", "network"):
        raise ValueError(f"switch must be 'stem' or 'network'. Received: switch={switch!r}")
    if (training or _symbolic(x) or resolve(switch) == "batched"
            or x.shape[0] is None or x.shape[0] == 1 or _compiling_torch()):
        return fn(x)
    return ops.map(lambda image: keras.tree.map_structure(lambda y: y[0], fn(image[None])), x)


# A model's own inference executables (the ``executable`` switch), kept as long
# as the model lives, one with and one without ``lean``'s compile option; and
# that XLA option (CPUs only, jaxlib releases it was measured on).
_EXECUTABLES = weakref.WeakKeyDictionary()
_LEAN_CPU_COMPILE = {"xla_cpu_use_fusion_emitters": False}


def uses_own_executable(model):
    """Whether an eager inference call of ``model`` runs its own compiled
    executable now (the ``executable`` switch at ``own`` or ``lean``; not for
    a model set to ``run_eagerly``): see :func:`own_executable_call`."""
    return resolve("executable") in ("own", "lean") and not model.run_eagerly


def predicts_through_own_executable(model):
    """Whether ``model``'s ``predict`` step should run eagerly around its own
    executable instead of being compiled by Keras (the ``executable`` switch
    at ``lean``, whose compile option Keras' compiled step cannot pass)."""
    return resolve("executable") == "lean" and not model.run_eagerly


def own_executable_call(model, fn, x, training=False):
    """``fn(x)``: ``model``'s call on ``x``. Where :func:`uses_own_executable`
    and the call is eager inference on JAX (``x`` an array, not traced by a
    ``jax.jit`` or a compiled Keras step), the call runs as one XLA executable
    of ``model.stateless_call`` with the variables' current values, compiled
    once per input shape and dtype (and again after a :func:`set_kernel`),
    instead of op by op: HIRI-ViT-S@448's ``model(x)`` at batch 8 on a 2-core
    CPU 3.1 s -> 0.7 s (``docs/RESULTS.md``).

    With ``lean``, on CPUs with jaxlib 0.10, that executable is compiled with
    XLA's older fusion emitters (``xla_cpu_use_fusion_emitters=False``, an
    option of one executable, which only a top-level ``jax.jit`` accepts:
    Keras' compiled ``predict`` step offers no way to pass it, and
    ``XLA_FLAGS`` would set it for every program in the process). The compiler
    then peaks at 73 MiB above S@448's weights instead of 206 and keeps 45 MiB
    instead of 60 (``benchmarks/xla_memory.py --compiler-option``), and
    ``predict`` runs at 0.92x the speed of Keras' compiled step
    (``benchmarks/throughput.py --kernel-pair executable``)."""
    if training or not uses_own_executable(model) or _symbolic(x) or _jax_tracing():
        return fn(x)
    lean = resolve("executable") == "lean" and _on_jax_cpu() and runtime.on_measured_jaxlib()
    runs = _EXECUTABLES.setdefault(model, {})
    if lean not in runs:
        runs[lean] = _own_executable(model, dict(_LEAN_CPU_COMPILE) if lean else None)
    settings = tuple(resolve(name) for name in SWITCHES)  # read while tracing: a change retraces
    return runs[lean]([v.value for v in model.trainable_variables],
                      [v.value for v in model.non_trainable_variables], x, settings)


def _own_executable(model, compiler_options):
    import jax

    owner = weakref.ref(model)  # the cache's value must not keep its key alive

    def inference(trainable, non_trainable, x, settings):
        return owner().stateless_call(trainable, non_trainable, x, training=False)[0]

    return jax.jit(inference, static_argnums=3, compiler_options=compiler_options)


def _symbolic(x):
    """Whether ``x`` only carries a shape: a ``KerasTensor``, or a tensor on
    PyTorch's "meta" device (Keras' torch backend infers shapes on it, with
    an unknown batch set to 83: a loop per image there made a tiny model's
    build 0.4 -> 1.8 s and tests/test_builder.py 24 -> 89 s)."""
    if isinstance(x, keras.KerasTensor):
        return True
    return keras.backend.backend() == "torch" and x.device.type == "meta"


def use_unrolled_depthwise():
    """Whether depthwise convolutions run as sums of shifted slices now (the
    ``depthwise`` switch resolved)."""
    return resolve("depthwise") == "unrolled"


def use_host_sampling():
    """Whether the weights' normal initialisers draw with NumPy now (the
    ``init`` switch). Not while JAX traces: a symbolic pass that reads a weight
    not yet initialised makes Keras draw a throw-away placeholder, which
    Keras' sampler traces abstractly, at no cost, where NumPy would draw it."""
    return resolve("init") == "host" and not _jax_tracing()


def fold_bn_at_call():
    """Whether an inference BatchNorm right after a convolution folds into it
    at call time (``conv_bn``; :meth:`keras_hiri.common.CompositeLayer.conv_bn`)."""
    return resolve("conv_bn") == "folded"


def _jax_tracing():
    if keras.backend.backend() != "jax":
        return False
    import jax

    return isinstance(jax.numpy.zeros(()), jax.core.Tracer)


def attention(q, k, v):
    """``softmax(q k^T / sqrt(d)) v`` on ``(B, N, heads, d)`` tensors."""
    if resolve("attention", keras.backend.standardize_dtype(q.dtype)) == "fused":
        return ops.dot_product_attention(q, k, v)
    scale = 1.0 / float(q.shape[-1]) ** 0.5
    q, k, v = (ops.transpose(t, (0, 2, 1, 3)) for t in (q, k, v))  # (B, heads, N, d)
    logits = ops.matmul(q, ops.transpose(k, (0, 1, 3, 2))) * ops.cast(scale, q.dtype)
    weights = ops.cast(ops.softmax(ops.cast(logits, "float32"), axis=-1), v.dtype)
    return ops.transpose(ops.matmul(weights, v), (0, 2, 1, 3))


def _needs(backend, name, implementation):
    """Raises where switch ``name`` was set to ``implementation``, which only
    ``backend`` has, while another backend runs."""
    if keras.backend.backend() != backend:
        raise ValueError(
            f"kernel {name!r} = {implementation!r} needs the {backend} backend. "
            f"Received backend: {keras.backend.backend()!r}; use 'auto' or {SWITCHES[name][1]!r}."
        )


def _use_torch_conv(kernel_size, strides, padding, dilation_rate):
    if resolve("conv") != "torch_nhwc":
        return False
    _needs("torch", "conv", "torch_nhwc")
    # "same" is symmetric padding only for odd kernels at stride 1.
    return padding != "same" or (
        tuple(strides) == (1, 1) and all(k % 2 == 1 for k in kernel_size)
    )


def _compiling_torch():
    """Whether torch.compile is tracing this call (``jit_compile=True`` on PyTorch)."""
    if keras.backend.backend() != "torch":
        return False
    import torch

    return torch.compiler.is_compiling()


def _check_padding(padding):
    if padding in ("valid", "same") or (isinstance(padding, int) and padding >= 0):
        return
    raise ValueError(
        "padding must be 'valid', 'same' or a non-negative int (zeros on every side). "
        f"Received: padding={padding!r}"
    )


def _torch_conv(x, weight, bias, strides, padding, dilation_rate, kernel_size):
    """torch's conv2d on the NCHW view of NHWC ``x`` (channels-last memory),
    with ``weight`` in torch's ``(out, in / groups, kh, kw)`` layout; the bias
    and the zero padding are applied inside the one call."""
    import torch

    weight = weight.contiguous(memory_format=torch.channels_last)
    if padding == "valid":
        pad = 0
    elif padding == "same":
        pad = tuple(d * (k - 1) // 2 for k, d in zip(kernel_size, dilation_rate))
    else:
        pad = padding
    y = torch.nn.functional.conv2d(
        x.permute(0, 3, 1, 2), weight, bias, stride=tuple(strides), padding=pad,
        dilation=tuple(dilation_rate), groups=x.shape[-1] // weight.shape[1],
    )
    return y.permute(0, 2, 3, 1)


def conv(x, kernel, strides=(1, 1), padding="valid", dilation_rate=(1, 1), bias=None):
    """``keras.ops.conv`` of an NHWC ``x`` with a ``(kh, kw, in, out)`` kernel,
    plus ``bias`` if given. ``padding`` is ``"valid"``, ``"same"`` or an int
    ``p``: ``p`` zeros on every side of the grid first (PyTorch's
    ``padding=p``; Keras' ``"same"`` pads asymmetrically at stride 2)."""
    return _conv(x, kernel, bias, strides, padding, dilation_rate, depthwise=False)


def depthwise_conv(x, kernel, strides=(1, 1), padding="valid", dilation_rate=(1, 1), bias=None,
                   add_input=False):
    """``keras.ops.depthwise_conv`` of an NHWC ``x``, ``(kh, kw, in, multiplier)``
    kernel, plus ``bias`` if given, plus ``x`` itself with ``add_input=True``
    (``conv(x) + x``, the output grid must equal the input's). ``padding`` as
    in :func:`conv`."""
    return _conv(x, kernel, bias, strides, padding, dilation_rate, depthwise=True,
                 add_input=add_input)


def _same_grid(kernel_size, strides, padding, dilation_rate):
    """Whether the convolution maps every pixel to itself at the centre tap."""
    centred = padding == "same" or padding == kernel_size[0] // 2 == kernel_size[1] // 2
    return (tuple(strides) == (1, 1) and tuple(dilation_rate) == (1, 1) and centred
            and all(k % 2 == 1 for k in kernel_size))


def _conv(x, kernel, bias, strides, padding, dilation_rate, depthwise, add_input=False):
    _check_padding(padding)
    kernel_size = tuple(kernel.shape[:2])
    if add_input and not (_same_grid(kernel_size, strides, padding, dilation_rate)
                          and kernel.shape[-1] == 1):
        raise ValueError(
            "add_input=True needs an output grid equal to the input's: stride 1, odd kernel, "
            "'same' (or k // 2) padding, no dilation, depth multiplier 1. Received: "
            f"kernel_size={kernel_size}, strides={tuple(strides)}, padding={padding!r}, "
            f"dilation_rate={tuple(dilation_rate)}, kernel shape={tuple(kernel.shape)}"
        )
    torch_conv = _use_torch_conv(kernel_size, strides, padding, dilation_rate)
    # Under torch.compile (jit_compile=True) Inductor fuses padding, bias and
    # sums itself, and its lowering of a conv with the padding inside fails on
    # dynamic shapes: there the torch conv runs alone, the rest as separate ops.
    if torch_conv and not _compiling_torch():
        weight = _torch_weight(kernel, kernel_size, depthwise)
        if add_input:  # conv(x) + x == conv with 1 added to the centre tap
            weight = weight.clone()
            weight[:, :, kernel_size[0] // 2, kernel_size[1] // 2] += 1
        if bias is not None:
            bias = ops.convert_to_tensor(bias)
        return _torch_conv(ops.convert_to_tensor(x), weight, bias, strides, padding,
                           dilation_rate, kernel_size)
    inputs = x
    if isinstance(padding, int):
        x = ops.pad(x, ((0, 0), (padding, padding), (padding, padding), (0, 0)))
        padding = "valid"
    if torch_conv:
        out = _torch_conv(ops.convert_to_tensor(x), _torch_weight(kernel, kernel_size, depthwise),
                          None, strides, padding, dilation_rate, kernel_size)
    else:
        op = ops.depthwise_conv if depthwise else ops.conv
        out = op(x, kernel, strides=strides, padding=padding, dilation_rate=dilation_rate,
                 data_format="channels_last")
    if bias is not None:
        bias = ops.cast(bias, out.dtype)
        # On TensorFlow ops.add makes this a BiasAdd, and Grappler's remapper
        # fuses DepthwiseConv2dNative + BiasAdd + the Add after it into a node
        # with no op ("... has an empty op name"); ``+`` stays an AddV2.
        out = out + bias if depthwise else ops.add(out, bias)
    return ops.add(inputs, out) if add_input else out


def _torch_weight(kernel, kernel_size, depthwise):
    """A Keras conv kernel in torch's ``(out, in / groups, kh, kw)`` layout."""
    kernel = ops.convert_to_tensor(kernel)
    if depthwise:  # (in * multiplier, 1, kh, kw)
        return kernel.reshape(*kernel_size, 1, -1).permute(3, 2, 0, 1)
    return kernel.permute(3, 2, 0, 1)


def dense(x, kernel, bias=None):
    """``x @ kernel + bias`` over the last axis of ``x`` (``keras.layers.Dense``)."""
    if resolve("dense") == "ops":
        out = ops.matmul(x, kernel)
        return out if bias is None else ops.add(out, bias)
    _needs("torch", "dense", "torch_addmm")
    import torch

    x, kernel = ops.convert_to_tensor(x), ops.convert_to_tensor(kernel)
    flat = x.reshape(-1, x.shape[-1])
    if bias is None:
        out = torch.mm(flat, kernel)
    else:  # the bias is the GEMM's initial output: no second pass
        out = torch.addmm(ops.convert_to_tensor(bias), flat, kernel)
    return out.reshape(*x.shape[:-1], kernel.shape[-1])


def batch_norm(x, mean, variance, offset, scale, epsilon, axis=-1):
    """Inference batch normalisation over the last axis (``axis``: -1 or its
    positive index): ``(x - mean) / sqrt(variance + epsilon) * scale + offset``
    (``offset`` and ``scale`` may be ``None``)."""
    implementation = resolve("batchnorm")
    if implementation == "ops":
        return ops.batch_normalization(x, mean, variance, axis=axis, offset=offset, scale=scale,
                                       epsilon=epsilon)
    if implementation == "centered":
        multiplier = ops.rsqrt(variance + epsilon)
        if scale is not None:
            multiplier = multiplier * scale
        out = (x - mean) * multiplier
        return out if offset is None else out + offset
    _needs("torch", "batchnorm", "torch_affine")
    import torch

    # Keras' torch op makes three passes over x (subtract, multiply, add);
    # folded into one multiplier and one shift, it is a single addcmul.
    multiplier = torch.rsqrt(ops.convert_to_tensor(variance) + epsilon)
    if scale is not None:
        multiplier = multiplier * ops.convert_to_tensor(scale)
    shift = -ops.convert_to_tensor(mean) * multiplier
    if offset is not None:
        shift = shift + ops.convert_to_tensor(offset)
    return torch.addcmul(shift, ops.convert_to_tensor(x), multiplier)
