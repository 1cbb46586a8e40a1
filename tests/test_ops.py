"""keras_hiri.ops: each backend implementation equals the generic op, and each
choice is made when a layer is built, for the device configuration at hand."""

import math

import keras
import numpy as np
import pytest

from keras_hiri.layers.activation import gelu
from keras_hiri.layers.composite import model_layers
from keras_hiri.layers.conv import Conv2D, DepthwiseConv2D, depthwise_conv2d
from keras_hiri import ops as hiri_ops
from tests.helpers import to_numpy
from tests.tiny import images, tiny_model

BACKEND = keras.backend.backend()


def _compiled(fn):
    """``fn`` compiled the way Keras compiles a model's step on this backend."""
    if BACKEND == "jax":
        import jax

        return jax.jit(fn)
    if BACKEND == "tensorflow":
        import tensorflow as tf

        return tf.function(fn, jit_compile=False)
    return fn


def _random(shape, seed=0):
    return np.random.default_rng(seed).normal(size=shape).astype("float32")


@pytest.mark.parametrize("stride, shape, padding", [
    (1, (2, 9, 7, 5), 1), (2, (2, 11, 8, 5), 1),
    # Keras' "same" at stride 2 puts an odd zero after the grid (8 -> 1 zero after, 11 -> 1 on each side)
    (2, (2, 11, 8, 5), "same"), (1, (2, 9, 7, 5), "same"), (2, (2, 11, 8, 5), "valid"),
])
@pytest.mark.parametrize("compiled", [False, True])
def test_unrolled_depthwise_equals_the_generic_op(stride, shape, padding, compiled):
    x, kernel, bias = _random(shape), _random((3, 3, shape[-1], 1), 1), _random((shape[-1],), 2)

    def run(implementation):
        fn = lambda t: hiri_ops.conv(t, kernel, (stride, stride), padding, bias, depthwise=True,  # noqa: E731
                                     implementation=implementation)
        return to_numpy((_compiled(fn) if compiled else fn)(keras.ops.convert_to_tensor(x)))

    generic, unrolled = run("ops"), run("unrolled")
    side = (lambda n: (n - 3) // stride + 1) if padding == "valid" else (lambda n: -(-n // stride))
    assert generic.shape == (shape[0], side(shape[1]), side(shape[2]), shape[3])
    np.testing.assert_allclose(unrolled, generic, atol=1e-5)


@pytest.mark.skipif(BACKEND != "torch", reason="torch's convolution exists on PyTorch only")
@pytest.mark.parametrize("depthwise", [False, True])
@pytest.mark.parametrize("kernel_size, stride, padding", [
    (3, 1, "same"), (3, 2, 1), (7, 4, 3), (3, 2, "same"), (2, 1, "same"), (3, 2, "valid"), (1, 1, "valid"),
])
def test_torch_conv_equals_the_generic_op(depthwise, kernel_size, stride, padding):
    x = _random((2, 11, 8, 6))
    out_channels = 6 if depthwise else 4
    kernel = _random((kernel_size, kernel_size, 6, 1 if depthwise else out_channels), 1)
    bias = _random((out_channels,), 2)
    add_input = depthwise and stride == 1 and kernel_size % 2 == 1 and padding in ("same", kernel_size // 2)
    args = (x, kernel, (stride, stride), padding, bias)
    generic = hiri_ops.conv(*args, depthwise=depthwise, add_input=add_input, implementation="ops")
    torch_out = hiri_ops.conv(*args, depthwise=depthwise, add_input=add_input, implementation="torch")
    np.testing.assert_allclose(to_numpy(torch_out), to_numpy(generic), atol=1e-5)


@pytest.mark.parametrize("dtype, atol", [("float32", 1e-5), ("float16", 2e-3)])
def test_explicit_attention_equals_the_generic_op(dtype, atol):
    q, k, v = (keras.ops.convert_to_tensor(_random((2, 12, 3, 8), seed), dtype) for seed in range(3))
    explicit = to_numpy(hiri_ops.attention(q, k, v, fused=False)).astype("float32")
    if hiri_ops.use_fused_attention(dtype):
        fused = to_numpy(hiri_ops.attention(q, k, v, fused=True)).astype("float32")
    else:  # JAX float16: the generic op is refused there; compare with float32
        q32, k32, v32 = (keras.ops.cast(t, "float32") for t in (q, k, v))
        fused = to_numpy(hiri_ops.attention(q32, k32, v32, fused=True))
    np.testing.assert_allclose(explicit, fused, atol=atol)


def test_gelu_is_the_exact_erf_form():
    x = np.linspace(-6, 6, 97).astype("float32")
    expected = np.array([0.5 * t * (1 + math.erf(t / math.sqrt(2))) for t in x], "float32")
    np.testing.assert_allclose(to_numpy(gelu(x)), expected, atol=1e-6)


@pytest.mark.parametrize("devices, unrolled", [
    (["cpu:0"], True), (["cpu:0", "cpu:1"], True), (["gpu:0"], False), (["tpu:0", "tpu:1"], False),
])
def test_depthwise_choice_follows_the_devices(monkeypatch, devices, unrolled):
    """The unrolled depthwise is chosen on JAX when every device is a CPU, one
    or several; never on accelerators or other backends."""
    monkeypatch.setattr(keras.distribution, "list_devices", lambda *args: devices)
    assert hiri_ops.use_unrolled_depthwise() == (unrolled and BACKEND == "jax")
    layer = depthwise_conv2d(3)
    layer.build((None, 8, 8, 4))
    assert layer.unrolled == (unrolled and BACKEND == "jax")


def test_every_layer_records_its_choice_at_build():
    model = tiny_model()
    convolutions = [layer for layer in model_layers(model)
                    if isinstance(layer, (Conv2D, DepthwiseConv2D))]
    assert convolutions
    expected = "torch" if BACKEND == "torch" else "ops"
    for layer in convolutions:
        assert layer.implementation == expected, layer.name
        if isinstance(layer, DepthwiseConv2D):
            assert layer.unrolled == hiri_ops.use_unrolled_depthwise(), layer.name
    attention = [layer for layer in model_layers(model) if hasattr(layer, "fused_attention")]
    assert attention and all(layer.fused_attention == hiri_ops.use_fused_attention("float32")
                             for layer in attention)


def test_a_layer_the_implementations_do_not_cover_is_keras_own():
    """Channels-first, grouped or dilated convolutions compute with Keras' own call."""
    layer = Conv2D(4, 3, padding="same", dilation_rate=2)
    x = _random((1, 9, 9, 3))
    out = layer(x)
    assert layer.implementation is None
    reference = keras.layers.Conv2D(4, 3, padding="same", dilation_rate=2)
    reference.build(x.shape)
    reference.set_weights(layer.get_weights())
    np.testing.assert_allclose(to_numpy(out), to_numpy(reference(x)), atol=1e-6)


def test_predict_equals_the_eager_call():
    """Keras' compiled ``predict`` and the eager call of the whole model agree."""
    model = tiny_model()
    x = images(2)
    np.testing.assert_allclose(model.predict(x, verbose=0), to_numpy(model(x, training=False)), atol=1e-5)
