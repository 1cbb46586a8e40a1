"""Convolutions with PyTorch-exact padding, computed by :mod:`keras_hiri.ops`,
and the linear-layer factory."""

import warnings

import keras

from keras_hiri import ops as hiri_ops
from keras_hiri.layers import register
from keras_hiri.layers.init import conv_initializer, dense_initializer


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


def _convolution_arguments(kernel_size, strides, use_bias, name, dtype):
    """What every convolution of the model shares: :func:`symmetric_padding`,
    zero biases, channels-last."""
    return dict(kernel_size=kernel_size, strides=strides, padding=symmetric_padding(kernel_size, strides),
                use_bias=use_bias, bias_initializer="zeros", data_format="channels_last", name=name,
                dtype=dtype)


def conv2d(filters, kernel_size, strides=1, use_bias=True, name=None, dtype=None):
    """A :class:`Conv2D` with :func:`symmetric_padding`."""
    return Conv2D(filters, kernel_initializer=conv_initializer(),
                  **_convolution_arguments(kernel_size, strides, use_bias, name, dtype))


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
    return DepthwiseConv2D(depthwise_initializer=conv_initializer(),
                           **_convolution_arguments(kernel_size, strides, use_bias, name, dtype))


def dense(units, use_bias=True, name=None, dtype=None):
    return keras.layers.Dense(
        units,
        use_bias=use_bias,
        kernel_initializer=dense_initializer(),
        bias_initializer="zeros",
        name=name,
        dtype=dtype,
    )
