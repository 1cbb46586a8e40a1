"""The base of the layers built from sub-layers, and walks over them."""

import keras

from keras_hiri import checks
from keras_hiri.layers.conv import conv2d, depthwise_conv2d
from keras_hiri.layers.norm import batch_norm, make_norm


class CompositeLayer(keras.layers.Layer):
    """Base of the layers built from sub-layers.

    ``__init__`` records the arguments; sub-layers are created in ``build``,
    as keras-hub's layers do: a subclass's ``build(input_shape)`` creates them
    with ``dtype=self.dtype_policy`` (so a mixed-precision or quantization
    policy reaches them) and builds each on the shape it receives, which the
    sub-layers' own ``compute_output_shape`` gives (:meth:`build_chain`).
    Every subclass states its ``compute_output_shape``, so a functional model
    is assembled without tracing ``call``. ``build_from_config`` (the default
    one, from the recorded input shape) rebuilds a revived layer completely,
    and ``get_config`` -> ``from_config`` -> ``get_config`` is idempotent.

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

    def conv_bn(self, conv, bn, filters, kernel_size, strides=1):
        """A convolution and the BatchNorm after it, named ``{name}_{conv}`` and
        ``{name}_{bn}`` (``filters=None``: depthwise). With ``fold_bn`` the
        convolution has a bias and the BN is an ``Identity`` (list the pair in
        :meth:`bn_folds`)."""
        name, folded, dtype = self.name, self.fold_bn, self.dtype_policy
        if filters is None:
            layer = depthwise_conv2d(kernel_size, strides, use_bias=folded, name=f"{name}_{conv}", dtype=dtype)
        else:
            layer = conv2d(filters, kernel_size, strides, use_bias=folded, name=f"{name}_{conv}", dtype=dtype)
        return layer, batch_norm(f"{name}_{bn}", folded, dtype=dtype)

    @staticmethod
    def build_chain(input_shape, *layers):
        """Builds ``layers`` one after another, each on the previous one's
        output shape, starting from ``input_shape``; returns the last output
        shape."""
        shape = input_shape
        for layer in layers:
            layer.build(shape)
            shape = layer.compute_output_shape(shape)
        return shape

    def rematerialized_call(self, layer_call, *args, **kwargs):
        """Keras' rematerialization (``keras.RematScope``), made exact for a
        layer with state.

        The recomputed function takes the tensors only: ``training`` and other
        Python options are closed over (JAX's checkpoint would trace them, and
        BatchNormalization branches on ``training``). It starts by restoring
        the layer's non-trainable state (BatchNorm statistics, the drop-path
        seed) to what the forward pass started from: TensorFlow and PyTorch
        re-run the Python function in the backward pass, which would otherwise
        draw another drop-path mask and update the statistics twice. The state
        it ends with is returned and assigned outside the recomputed function
        (JAX's checkpoint refuses values that leave it otherwise).
        """
        if super().rematerialized_call(layer_call, *args, **kwargs) is layer_call:
            return layer_call  # not rematerialized
        state = self.non_trainable_variables

        def call(*tensors, **options):
            names = [k for k, v in options.items() if keras.ops.is_tensor(v)]
            python = {k: v for k, v in options.items() if k not in names}
            count = len(tensors) + len(names)

            def recompute(*flat):
                for variable, value in zip(state, flat[count:]):
                    variable.assign(value)
                outputs = layer_call(*flat[:len(tensors)], **python, **dict(zip(names, flat[len(tensors):count])))
                return outputs, [keras.ops.copy(variable.value) for variable in state]

            start = [keras.ops.copy(variable.value) for variable in state]
            outputs, end = keras.remat(recompute)(*tensors, *(options[k] for k in names), *start)
            for variable, value in zip(state, end):  # returned, not left inside (JAX's checkpoint)
                variable.assign(value)
            return outputs

        return call

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


class SpatialLayer(CompositeLayer):
    """A composite that takes an image or feature map: the kit layers (stems,
    downsampling, blocks).

    ``data_format`` (``"channels_last"``, ``"channels_first"`` or ``None`` for
    ``keras.config.image_data_format()``) is the layout of the layer's input
    and output. The sub-layers always compute channels-last (the PyTorch-exact
    padding and the op implementations of :mod:`keras_hiri.ops` are written for
    it), so a channels-first layer transposes once on the way in and once on the
    way out; a model that stacks many such layers (as HIRI-ViT does) builds
    them channels-last and transposes once at its input. Subclasses call
    :meth:`channels_last_shape` at the top of ``build``, :meth:`to_channels_last`
    at the top of ``call`` and :meth:`from_channels_last` on its result, and
    state ``compute_output_shape`` through :meth:`in_layout`.
    """

    def __init__(self, data_format=None, **kwargs):
        super().__init__(**kwargs)
        self.data_format = checks.image_data_format(data_format, owner=type(self).__name__)

    @property
    def channels_first(self):
        return self.data_format == "channels_first"

    def channels_last_shape(self, shape):
        """``shape`` given in :attr:`data_format`, as ``(B, H, W, C)``."""
        shape = tuple(shape)
        return (shape[0], *shape[2:], shape[1]) if self.channels_first else shape

    def in_layout(self, shape):
        """A ``(B, H, W, C)`` shape, in :attr:`data_format`."""
        shape = tuple(shape)
        return (shape[0], shape[-1], *shape[1:-1]) if self.channels_first else shape

    def to_channels_last(self, x):
        return keras.ops.transpose(x, (0, 2, 3, 1)) if self.channels_first else x

    def from_channels_last(self, x):
        return keras.ops.transpose(x, (0, 3, 1, 2)) if self.channels_first else x

    def get_config(self):
        config = super().get_config()
        config.update(data_format=self.data_format)
        return config

    @classmethod
    def from_config(cls, config):
        # Files saved before the argument existed are channels-last, whatever
        # the loading process's image_data_format says.
        config = dict(config)
        config.setdefault("data_format", "channels_last")
        return super().from_config(config)


def sublayers(layer):
    """The direct sub-layers of ``layer``: its instance attributes that hold a
    Keras layer, in attribute-name order. Read from the attributes themselves
    (``dir``), which every backend's layers list, Keras' tracking included."""
    own = set(dir(type(layer)))
    children = []
    for name in dir(layer):
        if name.startswith("_") or name in own:
            continue
        value = getattr(layer, name, None)
        if isinstance(value, keras.layers.Layer) and value is not layer:
            children.append(value)
    return children


def walk(layer):
    """``layer`` and, for composites, all its sub-layers, depth first."""
    yield layer
    if isinstance(layer, CompositeLayer):
        for child in sublayers(layer):
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
        input_shape = self.channels_last_shape(input_shape)
        filters, kernel_size, strides = self.conv_shape
        self.conv = conv2d(filters, kernel_size, strides, name=f"{self.name}_conv",
                           dtype=self.dtype_policy)
        self.norm = make_norm(self.norm_kind, f"{self.name}_norm", self.fold_bn, dtype=self.dtype_policy)
        self.build_chain(input_shape, self.conv, self.norm)

    def bn_folds(self):
        return [(("conv",), "norm")] if self.norm_kind == "bn" else []

    def call(self, x, training=None):
        x = self.norm(self.conv(self.to_channels_last(x)), training=training)
        return self.from_channels_last(x)

    def get_config(self):
        config = super().get_config()
        config.update(norm=self.norm_kind)
        return config
