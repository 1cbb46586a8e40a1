"""Shared primitives: initialisers, norms, convolutions with PyTorch-exact padding, drop-path.

Everything here is backend-agnostic (``keras.ops`` only). The conventions follow
the authors' public Dual-ViT / Wave-ViT code, as ``docs/DESIGN.md`` explains:

* convolutions: ``normal(0, sqrt(2 / fan_out))``; linear layers: truncated
  normal with std 0.02 (on JAX drawn by NumPy on the host, see
  :class:`TruncatedNormal`); all biases zero;
* BatchNorm: momentum 0.9 (PyTorch 0.1), epsilon 1e-5; LayerNorm: epsilon 1e-6;
* GELU is the exact (erf) form, as ``torch.nn.GELU()``;
* a stride-2 ``k x k`` convolution pads ``k // 2`` on *every* side (PyTorch
  style, an int ``padding`` of :class:`Conv2D`), not Keras' ``"same"`` (which pads only after). Both give
  ``ceil(n / 2)`` outputs, but only the symmetric one lets a PyTorch
  checkpoint be ported without numerical drift.
"""

import threading
import warnings

import keras
import numpy as np
from keras import ops

from keras_hiri import checks
from keras_hiri import ops as hiri_ops
from keras_hiri.variants import halve  # noqa: F401  (the stride rule, for the layers)

PACKAGE = "keras_hiri"

BN_MOMENTUM = 0.9
BN_EPSILON = 1e-5
LN_EPSILON = 1e-6


def register(cls):
    """Registers a layer class for ``keras.saving`` under ``keras_hiri>``."""
    return keras.saving.register_keras_serializable(package=PACKAGE)(cls)


@register
class TruncatedNormal(keras.initializers.TruncatedNormal):
    """``keras.initializers.TruncatedNormal`` whose samples NumPy draws on the
    host from the initializer's int seed on JAX (:func:`keras_hiri.ops.draws_on_host`;
    a ``SeedGenerator`` seed takes Keras' own path).

    Keras draws on the backend: on JAX every new kernel shape compiles an XLA
    program for the sampler and more for its scale and shift (HIRI-ViT-S: 128
    compiles, 9.1 s of an 11.7 s first build on a 2-core CPU;
    ``python benchmarks/build_time.py``). The distribution, the seeding
    (``keras.utils.set_random_seed`` fixes it; an int seed gives the same
    values on every call) and the config are Keras'; the host's values are
    NumPy's (the same on every backend), not those Keras' sampler gives.
    """

    def __call__(self, shape, dtype=None):
        if not hiri_ops.draws_on_host(self.seed):
            return super().__call__(shape, dtype=dtype)
        return hiri_ops.host_normal(self.seed, tuple(shape), True, self.mean, self.stddev, dtype)


@register
class VarianceScaling(keras.initializers.VarianceScaling):
    """``keras.initializers.VarianceScaling`` whose normal distributions NumPy
    samples on the host where and for the reason :class:`TruncatedNormal`
    gives (the uniform one, explicit fan axes and a ``SeedGenerator`` seed
    take Keras' own path)."""

    def __call__(self, shape, dtype=None):
        custom_axes = getattr(self, "input_axes", None) is not None  # Keras >= 3.12's option
        if not hiri_ops.draws_on_host(self.seed) or self.distribution == "uniform" or custom_axes:
            return super().__call__(shape, dtype=dtype)
        shape = tuple(shape)
        # Keras' fans: a kernel's last two axes are (in, out), the rest its receptive field.
        if len(shape) < 2:
            fan_in = fan_out = shape[0] if shape else 1
        else:
            receptive = int(np.prod(shape[:-2]))
            fan_in, fan_out = shape[-2] * receptive, shape[-1] * receptive
        fan = {"fan_in": fan_in, "fan_out": fan_out, "fan_avg": (fan_in + fan_out) / 2}[self.mode]
        stddev = np.sqrt(self.scale / max(1.0, fan))
        truncated = self.distribution == "truncated_normal"
        if truncated:
            stddev /= 0.87962566103423978  # std of a unit normal truncated at +-2, as Keras
        return hiri_ops.host_normal(self.seed, shape, truncated, 0.0, stddev, dtype)


def conv_initializer():
    """``normal(0, sqrt(2 / fan_out))`` as in the authors' ``_init_weights``."""
    return VarianceScaling(scale=2.0, mode="fan_out", distribution="untruncated_normal")


def dense_initializer():
    """Truncated ``normal(0, 0.02)`` as in the authors' ``_init_weights``."""
    return TruncatedNormal(stddev=0.02)


def gelu(x):
    """Exact GELU, ``0.5 x (1 + erf(x / sqrt 2))`` (``torch.nn.GELU()``)."""
    return ops.gelu(x, approximate=False)


def batch_norm(name, folded=False, dtype=None):
    """A BatchNormalization, or, with ``folded=True`` (its statistics live in the
    preceding convolution, see :mod:`keras_hiri.folding`), an ``Identity``."""
    if folded:
        return keras.layers.Identity(name=name, dtype=dtype)
    return keras.layers.BatchNormalization(
        momentum=BN_MOMENTUM, epsilon=BN_EPSILON, name=name, dtype=dtype
    )


def layer_norm(name, dtype=None):
    return keras.layers.LayerNormalization(epsilon=LN_EPSILON, name=name, dtype=dtype)


def make_norm(kind, name, folded=False, dtype=None):
    """``kind`` is ``"bn"`` or ``"ln"``; both normalise the channel axis.
    ``folded`` applies to BN only (a LayerNorm cannot be folded)."""
    if kind == "bn":
        return batch_norm(name, folded, dtype=dtype)
    if kind == "ln":
        return layer_norm(name, dtype=dtype)
    raise ValueError(f"Unknown norm kind {kind!r}; expected 'bn' or 'ln'.")


class _Convolution:
    """Conv-layer mixin. ``padding`` may also be an int ``p``: ``p`` zeros on
    every side of the grid (PyTorch's ``padding=p``; Keras' ``"same"`` pads
    asymmetrically at stride 2); ``get_config`` keeps the int. ``build`` picks
    the layer's op implementation (:mod:`keras_hiri.ops`); a layer that none
    covers (channels-first, groups, dilation) is Keras' own computation."""

    def __init__(self, *args, padding="valid", **kwargs):
        is_int = isinstance(padding, int) and not isinstance(padding, bool)
        super().__init__(*args, padding="valid" if is_int else padding, **kwargs)
        if is_int and (padding < 0 or self.data_format != "channels_last"):
            raise ValueError(
                "An int padding must be >= 0 and needs data_format='channels_last'. "
                f"Received: padding={padding!r}, data_format={self.data_format!r}"
            )
        self.zero_padding = padding if is_int else None

    @property
    def kernel_padding(self):
        """``"valid"``, ``"same"`` or the int of zeros on every side."""
        return self.padding if self.zero_padding is None else self.zero_padding

    def build(self, input_shape):
        super().build(input_shape)
        generic = (self.data_format != "channels_last" or getattr(self, "groups", 1) != 1
                   or tuple(self.dilation_rate) != (1, 1))
        self.implementation = None if generic else "torch" if hiri_ops.use_torch_conv() else "ops"

    def convolve(self, inputs, depthwise, add_input=False):
        implementation = self.implementation
        if implementation == "ops" and depthwise and self.unrolled and _static_grid(inputs):
            implementation = "unrolled"
        out = hiri_ops.conv(inputs, self.kernel, self.strides, self.kernel_padding,
                            self.bias if self.use_bias else None, depthwise=depthwise,
                            add_input=add_input, implementation=implementation)
        return self.activation(out) if self.activation is not None else out

    def compute_output_shape(self, input_shape):
        p = self.zero_padding
        if p:
            input_shape = (input_shape[0],
                           *[None if n is None else n + 2 * p for n in input_shape[1:-1]],
                           input_shape[-1])
        return super().compute_output_shape(input_shape)

    def get_config(self):
        config = super().get_config()
        if self.zero_padding is not None:
            config["padding"] = self.zero_padding
        return config


def _static_grid(x):
    return not isinstance(x, keras.KerasTensor) and None not in tuple(x.shape[1:3])


@register
class Conv2D(_Convolution, keras.layers.Conv2D):
    """``keras.layers.Conv2D`` whose ``padding`` may be an int (zeros on every
    side), computed by :func:`keras_hiri.ops.conv`; weights and config are Keras'."""

    def call(self, inputs):
        if self.implementation is None:
            return super().call(inputs)
        return self.convolve(inputs, depthwise=False)


def symmetric_padding(kernel_size, strides):
    """The model's padding rule: ``"same"`` at stride 1 (symmetric for odd
    kernels), ``k // 2`` zeros on every side when strided (PyTorch's rule)."""
    return "same" if strides == 1 else kernel_size // 2


def conv2d(filters, kernel_size, strides=1, use_bias=True, name=None, dtype=None):
    """A :class:`Conv2D` with :func:`symmetric_padding`."""
    return Conv2D(
        filters,
        kernel_size,
        strides=strides,
        padding=symmetric_padding(kernel_size, strides),
        use_bias=use_bias,
        kernel_initializer=conv_initializer(),
        bias_initializer="zeros",
        data_format="channels_last",
        name=name,
        dtype=dtype,
    )


DEPTHWISE_IMPLEMENTATIONS = ("auto", "native", "unrolled")
_depthwise_choice = ["auto"]


def set_depthwise_implementation(implementation):
    """Deprecated: how a :class:`DepthwiseConv2D` built afterwards computes
    (``"auto"``: unrolled on JAX with CPU devices, see
    :func:`keras_hiri.ops.use_unrolled_depthwise`). Layers built before keep
    their choice; set ``layer.unrolled`` on a built layer instead."""
    warnings.warn("set_depthwise_implementation is deprecated: a DepthwiseConv2D picks its "
                  "implementation when built (set layer.unrolled to override)",
                  DeprecationWarning, stacklevel=2)
    if implementation not in DEPTHWISE_IMPLEMENTATIONS:
        raise ValueError(f"implementation must be one of {DEPTHWISE_IMPLEMENTATIONS}. "
                         f"Received: {implementation!r}")
    _depthwise_choice[0] = implementation


@register
class DepthwiseConv2D(_Convolution, keras.layers.DepthwiseConv2D):
    """``keras.layers.DepthwiseConv2D`` whose ``padding`` may be an int (zeros on
    every side), computed by :func:`keras_hiri.ops.conv`: as a sum of shifted
    slices where ``unrolled`` (decided at build: JAX on CPU devices, depth
    multiplier 1, odd kernels or valid padding; the grid must be static)."""

    def build(self, input_shape):
        super().build(input_shape)
        choice = _depthwise_choice[0]
        wanted = hiri_ops.use_unrolled_depthwise() if choice == "auto" else choice == "unrolled"
        odd = self.kernel_size[0] % 2 == 1 == self.kernel_size[1] % 2
        self.unrolled = bool(wanted and self.implementation == "ops" and self.depth_multiplier == 1
                             and (odd or self.kernel_padding == "valid"))

    def call(self, inputs, add_input=False):
        """``add_input=True`` returns ``conv(inputs) + inputs`` (the output grid
        must equal the input's; one convolution call on PyTorch)."""
        if self.implementation is None:
            if add_input:
                raise ValueError(f"add_input needs channels_last. Layer: {self.name!r}")
            return super().call(inputs)
        return self.convolve(inputs, depthwise=True, add_input=add_input)


def depthwise_conv2d(kernel_size, strides=1, use_bias=True, name=None, dtype=None):
    """A :class:`DepthwiseConv2D` with :func:`symmetric_padding`."""
    return DepthwiseConv2D(
        kernel_size,
        strides=strides,
        padding=symmetric_padding(kernel_size, strides),
        use_bias=use_bias,
        depthwise_initializer=conv_initializer(),
        bias_initializer="zeros",
        data_format="channels_last",
        name=name,
        dtype=dtype,
    )


def dense(units, use_bias=True, name=None, dtype=None):
    return keras.layers.Dense(
        units,
        use_bias=use_bias,
        kernel_initializer=dense_initializer(),
        bias_initializer="zeros",
        name=name,
        dtype=dtype,
    )


def avg_pool_2x2_ceil(x):
    """2x2 / stride-2 average pooling, ``ceil_mode=True``, padding excluded.

    Odd grids give ``ceil(n / 2)`` outputs and the border windows average only
    the pixels that exist (PyTorch's ``ceil_mode=True, count_include_pad=False``).
    Keras' own ``"same"`` average pooling counts the padded zeros on the torch
    backend, so it is not used here.
    """
    h, w = x.shape[1], x.shape[2]
    if h is not None and w is not None and h % 2 == 0 and w % 2 == 0:
        return ops.average_pool(x, 2, 2, padding="valid", data_format="channels_last")
    padding = ((0, 0), (0, 1), (0, 1), (0, 0))
    summed = ops.average_pool(ops.pad(x, padding), 2, 2, padding="valid",
                                data_format="channels_last")
    ones = ops.ones_like(x[..., :1])
    count = ops.average_pool(ops.pad(ones, padding), 2, 2, padding="valid",
                               data_format="channels_last")
    return summed / count


def upsample_2x_to(x, like):
    """Nearest-neighbour x2 upsampling (repetition), cropped to ``like``'s grid.

    Written as a broadcast and a reshape rather than ``ops.repeat``: Keras'
    PyTorch ``repeat`` fails on the "meta" device, so every symbolic pass
    through an HR block (each ``build``) fell back to computing a batch of 83
    on the CPU (building HIRI-ViT-L took 108 s on PyTorch); eagerly it is
    also faster on PyTorch and TensorFlow (docs/DESIGN.md).
    """
    batch, h, w, c = ops.shape(x)
    x = ops.broadcast_to(ops.reshape(x, (batch, h, 1, w, 1, c)), (batch, h, 2, w, 2, c))
    x = ops.reshape(x, (-1, h * 2, w * 2, c))
    h, w = like.shape[1], like.shape[2]
    if h is None or w is None:
        shape = ops.shape(like)
        h, w = shape[1], shape[2]
    return x[:, :h, :w, :]


def add_upsampled_2x(x, low):
    """``x + upsample_2x_to(low, x)``, the HR block's sum of its branches.

    On an even, static grid it is one broadcast add over ``x`` seen as
    ``(B, h/2, 2, w/2, 2, C)``, so the upsampled map is never materialised
    (``python benchmarks/kernels.py``: 1.3-2x faster eagerly on PyTorch and
    TensorFlow at the HR stages' maps, the same compiled; docs/DESIGN.md); on
    odd or dynamic grids, the sum itself.
    """
    h, w, c = x.shape[1], x.shape[2], x.shape[3]
    if h is None or w is None or c is None or h % 2 or w % 2:
        return ops.add(x, upsample_2x_to(low, x))
    low = ops.reshape(low, (-1, h // 2, 1, w // 2, 1, c))  # reshaped, not indexed: LiteRT slices <= 5-d
    out = ops.add(ops.reshape(x, (-1, h // 2, 2, w // 2, 2, c)), low)
    return ops.reshape(out, (-1, h, w, c))


_BUILD_TRACE = threading.local()  # set while a CompositeLayer.build traces its call


class CompositeLayer(keras.layers.Layer):
    """Base of the layers built from sub-layers.

    ``__init__`` records the arguments; sub-layers are created in ``build``,
    as keras-hub's layers do: a subclass's ``build(input_shape)`` creates them
    with ``dtype=self.dtype_policy`` (so a mixed-precision or quantization
    policy reaches them) and then calls ``super().build(input_shape)``, which
    gives them their weights by tracing ``call`` on a symbolic input of that
    shape: each sub-layer is built, under this layer's name scope, on the shape
    it really receives. So ``build_from_config`` (the default one, from the
    recorded input shape) rebuilds a revived layer completely, and
    ``get_config`` -> ``from_config`` -> ``get_config`` is idempotent.

    When sub-layers are quantized (``model.quantize``), :meth:`get_config`
    stores their policies in a ``keras.dtype_policies.DTypePolicyMap`` keyed by
    layer path, as keras-hub's backbones do; a revived layer hands the map to
    its sub-layers, which build their quantized variables from it.

    Layers with BatchNorms right after convolutions override :meth:`bn_folds`
    to list those pairs and honour ``fold_bn=True``: the BNs become
    ``Identity`` and the convolutions get a bias, the layout
    :func:`keras_hiri.fold_batchnorm` fills in.
    """

    def __init__(self, fold_bn=False, **kwargs):
        super().__init__(**kwargs)
        if fold_bn and not self.foldable():
            raise ValueError(
                f"{type(self).__name__} has no BatchNorm after a convolution; "
                "fold_bn=True is only valid for layers that override bn_folds()."
            )
        self.fold_bn = bool(fold_bn)

    def build(self, input_shape):
        """Builds the sub-layers the subclass's ``build`` created (see the
        class docstring) by tracing ``call`` on ``input_shape``."""
        if getattr(_BUILD_TRACE, "active", False):
            # An enclosing composite layer is tracing its call for its own
            # build, and this layer's call runs next in that trace: its
            # sub-layers get built there, on the shapes they receive. Tracing
            # here too would trace every nested layer once per level above it.
            return
        _BUILD_TRACE.active = True
        try:
            spec = keras.Operation.compute_output_spec(
                self, keras.KerasTensor(tuple(input_shape), dtype=self.compute_dtype)
            )
        finally:
            _BUILD_TRACE.active = False
        # Not a tracked attribute: only compute_output_spec reads it.
        object.__setattr__(self, "_traced", (tuple(input_shape), self.compute_dtype, spec))

    def compute_output_spec(self, x, *args, **kwargs):
        """A symbolic call on the input :meth:`build` traced reuses that trace's
        output instead of tracing ``call`` again (the second trace was about
        half of a functional model's construction time on TensorFlow)."""
        traced = self.__dict__.get("_traced")
        if (traced is not None and not args and set(kwargs) <= {"training"}
                and isinstance(x, keras.KerasTensor)
                and (tuple(x.shape), x.dtype) == traced[:2]):
            return keras.tree.map_structure(
                lambda t: keras.KerasTensor(t.shape, dtype=t.dtype), traced[2]
            )
        return super().compute_output_spec(x, *args, **kwargs)

    def __setattr__(self, name, value):
        # Record sub-layer attributes in creation order (on torch, sub-layers
        # live in torch's module registry, not in ``vars(self)``).
        if isinstance(value, keras.layers.Layer) and not name.startswith("_"):
            names = self.__dict__.get("_sublayer_names")
            if names is None:
                names = []
                object.__setattr__(self, "_sublayer_names", names)
            if name not in names:
                names.append(name)
        super().__setattr__(name, value)

    def sublayers(self):
        """The direct sub-layers, in the order they were created."""
        return [getattr(self, name) for name in self.__dict__.get("_sublayer_names", [])]

    @classmethod
    def foldable(cls):
        """Whether the class can have BNs folded (it overrides :meth:`bn_folds`)."""
        return cls.bn_folds is not CompositeLayer.bn_folds

    def bn_folds(self):
        """``[(conv attribute names, BN attribute name), ...]``: each BN is
        applied to the *sum* of those convolutions' outputs (usually one), so
        it folds into them exactly. Empty where nothing folds."""
        return []

    def get_config(self):
        config = super().get_config()
        if self.foldable():
            config.update(fold_bn=self.fold_bn)
        policy_map = _quantized_policy_map(self)
        if policy_map is not None:
            config["dtype"] = keras.dtype_policies.serialize(policy_map)
        return config


def build_optimizer(model):
    """Creates ``model.optimizer``'s slot variables for the trainable weights.

    Call it after ``compile`` and before the first ``fit``. Without it, Keras'
    TensorFlow trainer (no distribution strategy) creates them inside the
    first trace of the train step, and ``tf.function`` then traces the step
    twice, once creating variables and once without: the first ``fit`` of a
    tiny HIRI-ViT segmenter took 44 s that way and 20 s with this
    (docs/DESIGN.md). The JAX and PyTorch trainers create them before their
    first step anyway; there it changes nothing.
    """
    if model.optimizer is not None and not model.optimizer.built:
        model.optimizer.build(model.trainable_variables)


def build_training_state(model, batch):
    """:func:`build_optimizer`, and the compiled loss's state from one batch.

    A model compiled with a loss per output (keras-hub's RetinaNet: box and
    class losses) gets one loss tracker per output, created when the compiled
    loss first runs: on TensorFlow inside the first trace of the train step,
    which ``tf.function`` then traces twice, like the optimizer's slots. One
    eager ``compute_loss`` on ``batch`` (``(x, y)``, inference-mode forward, no
    update of weights or random state) creates them now; ``fit`` resets the
    trackers when its first epoch begins. Measured on the detect verb's tiny
    RetinaNet (docs/DESIGN.md): the first ``fit`` traced its step twice and
    took 15.8 s; with this, once and 8.5 s (+0.7 s for this call). The JAX
    and PyTorch trainers create that state before their first step anyway, and
    there the eager pass only costs time (JAX: the detect verb's test 50 -> 58 s),
    so on those backends only the optimizer is built.
    """
    build_optimizer(model)
    if keras.backend.backend() == "tensorflow":
        x, y = batch[0], batch[1]
        model.compute_loss(x, y, model(x, training=False), None)


def walk(layer):
    """``layer`` and, for composites, all its sub-layers, depth first."""
    yield layer
    if isinstance(layer, CompositeLayer):
        for child in layer.sublayers():
            yield from walk(child)


def model_layers(model):
    """Every layer of a functional model, sub-layers of composites included."""
    for top in model.layers:
        yield from walk(top)


def _policy_of(layer):
    """The layer's own policy (resolved through a ``DTypePolicyMap``)."""
    compute, variable = layer.compute_dtype, layer.variable_dtype
    source = variable if compute == variable else f"mixed_{compute}"
    mode = layer.quantization_mode
    return keras.dtype_policies.get(f"{mode}_from_{source}" if mode else source)


def _quantized_policy_map(layer):
    """A ``DTypePolicyMap`` of the quantized sub-layers of ``layer``, or ``None``."""
    quantized = [child for child in walk(layer) if child is not layer and child.quantization_mode]
    if not quantized:
        return None
    policy_map = keras.dtype_policies.DTypePolicyMap(default_policy=_policy_of(layer))
    for child in quantized:
        policy_map[child.path] = _policy_of(child)
    return policy_map


class ConvNorm:
    """Mixin for a layer that is one strided conv followed by a norm (the
    ViT-stem and the plain downsampling of the ablations). ``__init__`` calls
    :meth:`conv_norm` with the conv's shape; ``build`` creates the two layers.
    The BN (if any) folds."""

    def conv_norm(self, filters, kernel_size, strides, norm):
        """Records the conv's ``filters``, ``kernel_size``, ``strides`` and the
        ``norm`` kind (:func:`make_norm`) that ``build`` creates."""
        self.norm_kind = norm
        self.conv_shape = (filters, kernel_size, strides)

    def build(self, input_shape):
        filters, kernel_size, strides = self.conv_shape
        self.conv = conv2d(filters, kernel_size, strides, name=f"{self.name}_conv",
                           dtype=self.dtype_policy)
        self.norm = make_norm(self.norm_kind, f"{self.name}_norm", self.fold_bn, dtype=self.dtype_policy)
        super().build(input_shape)

    def bn_folds(self):
        return [(("conv",), "norm")] if self.norm_kind == "bn" else []

    def call(self, x, training=None):
        return self.norm(self.conv(x), training=training)

    def get_config(self):
        config = super().get_config()
        config.update(norm=self.norm_kind)
        return config


@register
class DropPath(keras.layers.Layer):
    """Stochastic depth: drops a whole residual branch per sample in training.

    Args:
        rate: probability of dropping the branch (0 disables the layer).
        seed: optional integer seed.
    """

    def __init__(self, rate=0.0, seed=None, **kwargs):
        super().__init__(**kwargs)
        checks.number_in("rate", rate, 0, 1, high_open=True, owner="DropPath")
        self.rate = float(rate)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed) if rate > 0 else None

    def drops(self, training):
        """Whether a call with this ``training`` drops anything (otherwise the
        layer is the identity, and callers may skip calling it)."""
        return bool(training) and self.rate > 0.0

    def call(self, x, training=None):
        if not self.drops(training):
            return x
        keep = 1.0 - self.rate
        shape = (ops.shape(x)[0],) + (1,) * (len(x.shape) - 1)
        mask = keras.random.uniform(shape, seed=self.seed_generator, dtype=x.dtype)
        mask = ops.floor(mask + keep)
        return x * mask / keep

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(rate=self.rate, seed=self.seed)
        return config
