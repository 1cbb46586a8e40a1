"""Every kernel switch: each implementation equals the generic op, eager and compiled."""

import keras
import numpy as np
import pytest

from keras_hiri import kernels
from tests.helpers import to_numpy


@pytest.fixture
def restore_switches():
    saved = {name: kernels.get_kernel(name) for name in kernels.SWITCHES}
    yield
    for name, implementation in saved.items():
        kernels.set_kernel(name, implementation)


def _eager_and_compiled(fn, *inputs):
    """``fn`` run eagerly and inside a jit-compiled functional model."""
    eager = to_numpy(fn(*[keras.ops.convert_to_tensor(x) for x in inputs]))
    symbolic = [keras.Input(x.shape[1:], dtype=str(x.dtype)) for x in inputs]
    model = keras.Model(symbolic, keras.layers.Lambda(lambda t: fn(*t))(symbolic))
    model.compile(jit_compile=keras.backend.backend() != "torch")
    compiled = np.asarray(model.predict_on_batch(list(inputs)))
    return eager, compiled


def test_gelu_implementations_agree(restore_switches):
    x = np.linspace(-6, 6, 2 * 97, dtype="float32").reshape(2, 97)
    exact = 0.5 * x * (1 + np.vectorize(__import__("math").erf)(x / np.sqrt(2)))
    for implementation in ("erf", "fused"):
        kernels.set_kernel("gelu", implementation)
        for out in _eager_and_compiled(kernels.gelu, x):
            np.testing.assert_allclose(out, exact, atol=1e-5)


@pytest.mark.parametrize("dtype,atol", [("float32", 1e-5), ("float16", 3e-3)])
def test_attention_implementations_agree(restore_switches, dtype, atol):
    rng = np.random.default_rng(0)
    q, k, v = (rng.normal(size=(2, 7, 3, 8)).astype(dtype) for _ in range(3))
    scores = np.einsum("bqhd,bkhd->bhqk", q.astype("float64"), k.astype("float64")) / np.sqrt(8)
    weights = np.exp(scores - scores.max(-1, keepdims=True))
    weights /= weights.sum(-1, keepdims=True)
    want = np.einsum("bhqk,bkhd->bqhd", weights, v.astype("float64"))
    implementations = ["explicit"]
    if not (keras.backend.backend() == "jax" and dtype == "float16"):
        implementations.append("fused")  # XLA's CPU backend refuses the fused f16 form
    for implementation in implementations:
        kernels.set_kernel("attention", implementation)
        for out in _eager_and_compiled(kernels.attention, q, k, v):
            np.testing.assert_allclose(out.astype("float64"), want, atol=atol)


def test_auto_choices_and_bad_switches(restore_switches):
    backend = keras.backend.backend()
    assert kernels.resolve("gelu") == ("fused" if backend == "torch" else "erf")
    assert kernels.resolve("attention", "float32") == "fused"
    assert kernels.resolve("attention", "float16") == ("explicit" if backend == "jax" else "fused")
    kernels.set_kernel("gelu", "erf")
    assert kernels.resolve("gelu") == "erf"
    with pytest.raises(ValueError, match="Unknown kernel switch"):
        kernels.set_kernel("softmax", "fused")
    with pytest.raises(ValueError, match="implementation must be one of"):
        kernels.set_kernel("gelu", "tanh")


CONV_CASES = [  # (kernel size, strides, padding, depthwise): the model's convolutions
    (3, 2, "valid", False), (3, 1, "same", False), (1, 1, "same", False),
    (3, 1, "same", True), (3, 2, "valid", True),
]


@pytest.mark.parametrize("size,strides,padding,depthwise", CONV_CASES)
def test_conv_implementations_agree(restore_switches, size, strides, padding, depthwise):
    rng = np.random.default_rng(size + strides)
    x = rng.normal(size=(2, 11, 9, 6)).astype("float32")
    kernel = rng.normal(size=(size, size, 6, 1 if depthwise else 5)).astype("float32")
    reference = keras.ops.depthwise_conv if depthwise else keras.ops.conv
    want = to_numpy(reference(x, kernel, strides=strides, padding=padding))
    op = kernels.depthwise_conv if depthwise else kernels.conv

    def fn(t):
        return op(t, keras.ops.convert_to_tensor(kernel), strides=(strides, strides),
                  padding=padding)

    implementations = ["ops"] + (["torch_nhwc"] if keras.backend.backend() == "torch" else [])
    for implementation in implementations:
        kernels.set_kernel("conv", implementation)
        for out in _eager_and_compiled(fn, x):
            np.testing.assert_allclose(out, want, atol=1e-5)


def test_conv_switch_chooses_torch_only_on_torch(restore_switches):
    backend = keras.backend.backend()
    assert kernels.resolve("conv") == ("torch_nhwc" if backend == "torch" else "ops")
    if backend != "torch":
        kernels.set_kernel("conv", "torch_nhwc")
        with pytest.raises(ValueError, match="needs the torch backend"):
            kernels.conv(np.ones((1, 4, 4, 2), "float32"), np.ones((1, 1, 2, 2), "float32"))


def test_model_layers_use_the_switch(restore_switches):
    """A tiny HIRI-ViT gives the same outputs with either conv implementation."""
    from tests.tiny import tiny_model

    model = tiny_model()
    x = np.random.default_rng(0).uniform(0, 255, (2, *model.input.shape[1:])).astype("float32")
    outputs = {}
    for implementation in ["ops"] + (["torch_nhwc"] if keras.backend.backend() == "torch" else []):
        kernels.set_kernel("conv", implementation)
        outputs[implementation] = to_numpy(model(x, training=False))
    for out in outputs.values():
        np.testing.assert_allclose(out, outputs["ops"], atol=1e-5)
