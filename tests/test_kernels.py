"""Every kernel switch: each implementation equals the generic op, eager and compiled."""

import keras
import numpy as np
import pytest

from keras_hiri import common, kernels
from tests.helpers import to_numpy


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
    assert kernels.resolve("init") == ("host" if backend == "jax" else "keras")
    assert kernels.use_host_sampling() == (backend == "jax")
    kernels.set_kernel("gelu", "erf")
    assert kernels.resolve("gelu") == "erf"
    with pytest.raises(ValueError, match="Unknown kernel switch"):
        kernels.set_kernel("softmax", "fused")
    with pytest.raises(ValueError, match="implementation must be one of"):
        kernels.set_kernel("gelu", "tanh")


CONV_CASES = [  # (kernel size, strides, padding, depthwise): the model's convolutions
    (3, 2, "valid", False), (3, 1, "same", False), (1, 1, "same", False),
    (3, 1, "same", True), (3, 2, "valid", True), (3, 2, 1, False), (7, 4, 3, False),
    (3, 2, 1, True),
]


def _torch_too(generic, fast):
    return [generic] + ([fast] if keras.backend.backend() == "torch" else [])


@pytest.mark.parametrize("with_bias", [False, True])
@pytest.mark.parametrize("size,strides,padding,depthwise", CONV_CASES)
def test_conv_implementations_agree(restore_switches, size, strides, padding, depthwise,
                                    with_bias):
    rng = np.random.default_rng(size + strides)
    x = rng.normal(size=(2, 11, 9, 6)).astype("float32")
    kernel = rng.normal(size=(size, size, 6, 1 if depthwise else 5)).astype("float32")
    bias = rng.normal(size=kernel.shape[-1] * (6 if depthwise else 1)).astype("float32")
    reference = keras.ops.depthwise_conv if depthwise else keras.ops.conv
    padded, ref_padding = x, padding
    if isinstance(padding, int):  # the reference pads with numpy
        padded = np.pad(x, ((0, 0), (padding, padding), (padding, padding), (0, 0)))
        ref_padding = "valid"
    want = to_numpy(reference(padded, kernel, strides=strides, padding=ref_padding))
    if with_bias:
        want = want + bias
    op = kernels.depthwise_conv if depthwise else kernels.conv

    def fn(t):
        return op(t, keras.ops.convert_to_tensor(kernel), strides=(strides, strides),
                  padding=padding, bias=keras.ops.convert_to_tensor(bias) if with_bias else None)

    for implementation in _torch_too("ops", "torch_nhwc"):
        kernels.set_kernel("conv", implementation)
        for out in _eager_and_compiled(fn, x):
            np.testing.assert_allclose(out, want, atol=1e-5)


@pytest.mark.parametrize("padding", ["same", 1])
def test_depthwise_add_input_agrees(restore_switches, padding):
    """``add_input=True`` (the CFFN's ``DWConv(z) + z``) on every implementation."""
    rng = np.random.default_rng(3)
    x = rng.normal(size=(2, 7, 6, 4)).astype("float32")
    kernel = rng.normal(size=(3, 3, 4, 1)).astype("float32")
    bias = rng.normal(size=4).astype("float32")
    want = to_numpy(keras.ops.depthwise_conv(x, kernel, padding="same")) + bias + x

    def fn(t):
        return kernels.depthwise_conv(t, keras.ops.convert_to_tensor(kernel), padding=padding,
                                      bias=keras.ops.convert_to_tensor(bias), add_input=True)

    for implementation in _torch_too("ops", "torch_nhwc"):
        kernels.set_kernel("conv", implementation)
        for out in _eager_and_compiled(fn, x):
            np.testing.assert_allclose(out, want, atol=1e-5)
    # the kernel itself is not changed by the centre-tap form
    np.testing.assert_array_equal(kernel, to_numpy(keras.ops.convert_to_tensor(kernel)))


def test_conv_rejects_bad_padding_and_add_input():
    x, kernel = np.ones((1, 6, 6, 2), "float32"), np.ones((3, 3, 2, 1), "float32")
    with pytest.raises(ValueError, match="padding must be 'valid', 'same' or a non-negative"):
        kernels.conv(x, np.ones((3, 3, 2, 2), "float32"), padding="full")
    with pytest.raises(ValueError, match="padding must be"):
        kernels.depthwise_conv(x, kernel, padding=-1)
    with pytest.raises(ValueError, match="add_input=True needs an output grid"):
        kernels.depthwise_conv(x, kernel, strides=(2, 2), padding=1, add_input=True)
    with pytest.raises(ValueError, match="add_input=True needs an output grid"):
        kernels.depthwise_conv(x, kernel, padding="valid", add_input=True)


@pytest.mark.parametrize("with_bias", [False, True])
@pytest.mark.parametrize("shape", [(5, 6), (2, 3, 4, 6)])
def test_dense_implementations_agree(restore_switches, shape, with_bias):
    rng = np.random.default_rng(len(shape))
    x = rng.normal(size=shape).astype("float32")
    kernel = rng.normal(size=(6, 7)).astype("float32")
    bias = rng.normal(size=7).astype("float32")
    want = x @ kernel + (bias if with_bias else 0)

    def fn(t):
        return kernels.dense(t, keras.ops.convert_to_tensor(kernel),
                             keras.ops.convert_to_tensor(bias) if with_bias else None)

    for implementation in _torch_too("ops", "torch_addmm"):
        kernels.set_kernel("dense", implementation)
        for out in _eager_and_compiled(fn, x):
            assert out.shape == want.shape
            np.testing.assert_allclose(out, want, atol=1e-5)


@pytest.mark.parametrize("affine", [False, True])
def test_batch_norm_implementations_agree(restore_switches, affine):
    rng = np.random.default_rng(5)
    x = rng.normal(size=(2, 5, 4, 3)).astype("float32")
    mean, offset, scale = (rng.normal(size=3).astype("float32") for _ in range(3))
    variance = rng.uniform(0.5, 2, size=3).astype("float32")
    want = (x - mean) / np.sqrt(variance + 1e-5)
    if affine:
        want = want * scale + offset

    def fn(t):
        c = keras.ops.convert_to_tensor
        return kernels.batch_norm(t, c(mean), c(variance), c(offset) if affine else None,
                                  c(scale) if affine else None, 1e-5)

    for implementation in ["centered", *_torch_too("ops", "torch_affine")]:
        kernels.set_kernel("batchnorm", implementation)
        for out in _eager_and_compiled(fn, x):
            np.testing.assert_allclose(out, want, atol=1e-5)


TORCH_ONLY = {"conv": "torch_nhwc", "dense": "torch_addmm", "batchnorm": "torch_affine"}


@pytest.mark.parametrize("name", sorted(TORCH_ONLY))
def test_torch_switches_choose_torch_only_on_torch(restore_switches, name):
    backend = keras.backend.backend()
    generic = "centered" if (name, backend) == ("batchnorm", "jax") else "ops"
    assert kernels.resolve(name) == (TORCH_ONLY[name] if backend == "torch" else generic)
    assert (TORCH_ONLY[name] in kernels.implementations(name)) == (backend == "torch")
    assert "ops" in kernels.implementations(name) and "auto" not in kernels.implementations(name)
    if backend != "torch":  # refused when set, not at the first model call
        with pytest.raises(ValueError, match="needs the torch backend"):
            kernels.set_kernel(name, TORCH_ONLY[name])
        assert kernels.get_kernel(name) == "auto"


def test_model_layers_use_the_switches(restore_switches):
    """A tiny HIRI-ViT gives the same outputs with the generic ops as with
    every switch's automatic choice, eager and compiled."""
    from tests.tiny import tiny_model

    model = tiny_model()
    x = np.random.default_rng(0).uniform(0, 255, (2, *model.input.shape[1:])).astype("float32")
    outputs = {}
    for setting in ("ops", "auto"):
        for name in TORCH_ONLY:
            kernels.set_kernel(name, setting)
        outputs[setting] = to_numpy(model(x, training=False))
        outputs[setting + "_predict"] = model.predict_on_batch(x)
    for out in outputs.values():
        np.testing.assert_allclose(out, outputs["ops"], atol=1e-5)


def test_jit_compile_predicts_what_eager_does(restore_switches):
    """``jit_compile=True`` (torch.compile on PyTorch, XLA elsewhere) on a tiny
    HIRI-ViT. Inductor's lowering of a strided conv with the padding inside
    fails on dynamic shapes, so under torch.compile the ``conv`` kernel leaves
    padding, bias and sums to it (this test failed before that)."""
    from tests.tiny import tiny_model

    model = tiny_model()
    x = np.random.default_rng(0).uniform(0, 255, (2, *model.input.shape[1:])).astype("float32")
    eager = model.predict_on_batch(x)
    model.compile(jit_compile=True)
    np.testing.assert_allclose(model.predict_on_batch(x), eager, atol=1e-5)


def _single_conv_pairs(model):
    """The (conv, BN) pairs of ``bn_folds()`` with one convolution: those
    ``CompositeLayer.conv_bn`` can fold at call time."""
    return sum(len(convs) == 1 for layer in common.model_layers(model)
               if isinstance(layer, common.CompositeLayer) for convs, _ in layer.bn_folds())


def _count_folds(monkeypatch):
    folds = []
    affine = common.bn_affine
    monkeypatch.setattr(common, "bn_affine", lambda *a: folds.append(1) or affine(*a))
    return folds


@pytest.mark.parametrize("options", [{}, {"stem": "conv", "downsample": "plain"}], ids=["hr", "conv-stem-plain"])
def test_conv_bn_implementations_agree(restore_switches, monkeypatch, options):
    """Every BN right after a single convolution folds into it at call time
    under ``conv_bn="folded"`` (counted), and the model's outputs equal the
    two layers' eagerly and as the backend compiles predict; a training call
    keeps the layers."""
    from tests.tiny import images, randomize_for_folding, tiny_model

    folds = _count_folds(monkeypatch)
    kernels.set_kernel("stem", "batched")  # one stem call per batch: per image, it folds once per image
    x = images(2)
    outputs = {}
    for implementation in ("layers", "folded"):
        kernels.set_kernel("conv_bn", implementation)
        keras.utils.set_random_seed(0)
        model = randomize_for_folding(tiny_model(classifier_activation=None, **options))  # a trace per setting
        del folds[:]
        eager = to_numpy(model(x, training=False))
        assert len(folds) == (_single_conv_pairs(model) if implementation == "folded" else 0)
        outputs[implementation] = eager
        outputs[implementation + "_predict"] = model.predict_on_batch(x)
        del folds[:]
        model(x, training=True)
        assert folds == []  # training normalises with the batch's statistics: no fold
    assert _single_conv_pairs(model) >= 5
    scale = max(1.0, float(np.abs(outputs["layers"]).max()))
    for out in outputs.values():
        np.testing.assert_allclose(out, outputs["layers"], atol=1e-5 * scale)


def test_conv_bn_keeps_the_layers_where_it_cannot_fold(restore_switches, monkeypatch):
    """The symbolic calls that build a model (they create the layers' weights)
    and mixed precision (the BN computes in float32, the conv not) take the
    two layers."""
    from tests.tiny import tiny_model

    folds = _count_folds(monkeypatch)
    kernels.set_kernel("conv_bn", "folded")
    assert kernels.fold_bn_at_call()
    model = tiny_model(dtype="mixed_bfloat16")
    assert folds == [] and _single_conv_pairs(model) >= 5
    assert all(layer.built for layer in common.model_layers(model))
    model(np.zeros((1, 100, 76, 3), "float32"), training=False)
    assert folds == []
    kernels.set_kernel("conv_bn", "auto")
    assert kernels.fold_bn_at_call() == (keras.backend.backend() in ("torch", "tensorflow"))


def _fence_implementations():
    return ["none"] + (["reduce_precision"] if keras.backend.backend() == "jax" else [])


@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16"])
def test_fence_is_the_identity(restore_switches, dtype):
    """``fence`` returns its input bit for bit (signed zeros, subnormals, the
    extremes, infinities, NaN), eagerly and compiled, under each
    implementation the backend has."""
    info = np.finfo("float32") if dtype == "bfloat16" else np.finfo(dtype)
    values = [0.0, -0.0, 1.0, -2.5, float(info.smallest_subnormal), float(info.tiny), 1e-3,
              np.inf, -np.inf, np.nan]
    x = np.array([values, [v * 3.1 for v in values]], "float32")
    x = keras.ops.convert_to_numpy(keras.ops.cast(x, dtype))  # rounded to dtype
    for implementation in _fence_implementations():
        kernels.set_kernel("fence", implementation)
        eager, compiled = _eager_and_compiled(kernels.fence, x)
        assert str(eager.dtype) == dtype  # (the compiled model's Lambda computes in float32)
        for out in (eager, compiled.astype(x.dtype)):
            np.testing.assert_array_equal(out.view(f"uint{8 * out.itemsize}") & ~_nan_bits(out),
                                          x.view(f"uint{8 * x.itemsize}") & ~_nan_bits(x))
            np.testing.assert_array_equal(np.isnan(out.astype("float32")), np.isnan(x.astype("float32")))


def _nan_bits(a):
    """All bits set where ``a`` is NaN (a NaN's payload may change), none elsewhere."""
    bits = np.zeros(a.shape, f"uint{8 * a.itemsize}")
    bits[np.isnan(a.astype("float32"))] = np.iinfo(bits.dtype).max
    return bits


def test_fence_choice_and_backend(restore_switches):
    backend = keras.backend.backend()
    assert kernels.resolve("fence") == ("reduce_precision" if backend == "jax" else "none")
    if backend != "jax":
        with pytest.raises(ValueError, match="needs the jax backend"):
            kernels.set_kernel("fence", "reduce_precision")
        assert kernels.get_kernel("fence") == "auto"


@pytest.mark.skipif(keras.backend.backend() != "jax", reason="XLA's fusions: the jax backend")
def test_fence_survives_xla_and_shrinks_the_compiled_temporaries(restore_switches):
    """A tiny HIRI-ViT (its GELUs and unrolled depthwise sums end in a fence)
    gives the same outputs under both implementations, eagerly and through
    predict; and what the fence is for, in XLA's compiled program: the identity
    is not optimised away, with the chains left to XLA's own fusions the
    compiled inference needs fewer temporary bytes, and a training pass has no
    fence (jaxlib 0.10's CPU compiler; on another release the compiled half
    says whether the fence still earns its place)."""
    import jax
    import jaxlib

    from tests.tiny import TINY_INPUT_SHAPE, images, tiny_model

    pictures = images(2)
    x = jax.ShapeDtypeStruct((8, *TINY_INPUT_SHAPE), "float32")
    kernels.set_kernel("network", "batched")  # the batch's temporaries, as measured
    compiled, outputs = {}, {}
    for implementation in ("none", "reduce_precision"):
        kernels.set_kernel("fence", implementation)
        keras.utils.set_random_seed(0)
        model = tiny_model(classifier_activation=None)
        outputs[implementation] = to_numpy(model(pictures, training=False))
        outputs[implementation + "_predict"] = model.predict_on_batch(pictures)
        trainable = [v.value for v in model.trainable_variables]
        non_trainable = [v.value for v in model.non_trainable_variables]

        def call(trainable, non_trainable, x, training=False):
            return model.stateless_call(trainable, non_trainable, x, training=training)[0]

        compiled[implementation] = jax.jit(call).lower(trainable, non_trainable, x).compile()
        training = jax.jit(call, static_argnums=3).lower(trainable, non_trainable, x, True).compile()
        assert "reduce-precision" not in training.as_text()  # training passes are not fenced
    for out in outputs.values():
        np.testing.assert_allclose(out, outputs["none"], atol=1e-5)
    if not jaxlib.__version__.startswith("0.10."):
        pytest.skip(f"the compiled programs were measured on jaxlib 0.10; this is {jaxlib.__version__}")
    assert "reduce-precision" not in compiled["none"].as_text()
    assert "reduce-precision" in compiled["reduce_precision"].as_text()
    temp = {k: c.memory_analysis().temp_size_in_bytes for k, c in compiled.items()}
    assert temp["reduce_precision"] < temp["none"], temp


@pytest.mark.parametrize("switch", ["stem", "network"])
def test_per_image_equals_batched(switch, restore_switches, monkeypatch):
    """The HR stem (``stem``) or the whole network (``network``) one image at a
    time gives the batched outputs, eagerly, through predict and compiled (XLA;
    torch.compile takes the batched call); it maps over the images in inference
    only (counted, with the other switch batched), and a training call, whose
    BatchNorms need the batch, is the batched one."""
    from tests.tiny import images, randomize_batchnorm_statistics, tiny_model

    maps = []
    ops_map = keras.ops.map
    monkeypatch.setattr(keras.ops, "map", lambda f, xs: maps.append(xs.shape[0]) or ops_map(f, xs))
    x = images(3)
    outputs, trained = {}, {}
    kernels.set_kernel("network" if switch == "stem" else "stem", "batched")
    for implementation in ("batched", "per_image"):
        kernels.set_kernel(switch, implementation)
        keras.utils.set_random_seed(0)
        del maps[:]
        model = tiny_model(classifier_activation=None)
        if keras.backend.backend() != "jax":  # (JAX infers shapes by tracing: one cheap trace of the loop)
            assert maps == []  # shape inference (PyTorch's meta tensors, batch 83) takes the batched call
        randomize_batchnorm_statistics(model)
        del maps[:]
        outputs[implementation] = to_numpy(model(x, training=False))
        assert maps == ([3] if implementation == "per_image" else [])
        outputs[implementation + "_predict"] = model.predict_on_batch(x)
        if implementation == "per_image":  # compiled against the batched eager call (one compile)
            model.compile(jit_compile=True)
            outputs[implementation + "_compiled"] = model.predict_on_batch(x)
        del maps[:]
        trained[implementation] = to_numpy(model(x, training=True))
        assert maps == []
    for out in outputs.values():
        np.testing.assert_allclose(out, outputs["batched"], atol=1e-4)
    np.testing.assert_allclose(trained["per_image"], trained["batched"], atol=1e-5)


def test_per_image_choice(restore_switches):
    # CI's machines: one CPU, no accelerator. The whole network per image only on JAX.
    assert kernels.resolve("stem") == "per_image"
    assert kernels.resolve("network") == ("per_image" if keras.backend.backend() == "jax" else "batched")
    x = np.arange(6, dtype="float32").reshape(3, 2)
    for switch in ("stem", "network"):
        kernels.set_kernel(switch, "per_image")
        for out in _eager_and_compiled(lambda t: kernels.per_image(lambda u: u * 2 + u[:, :1], t, switch=switch), x):
            np.testing.assert_array_equal(out, x * 2 + x[:, :1])
    nested = kernels.per_image(lambda u: {"a": u, "b": [u[:, :1]]}, keras.ops.convert_to_tensor(x), switch="network")
    np.testing.assert_array_equal(to_numpy(nested["b"][0]), x[:, :1])
    with pytest.raises(ValueError, match="switch must be 'stem' or 'network'. Received: switch='head'"):
        kernels.per_image(lambda u: u, x, switch="head")


def test_own_executable_equals_keras(restore_switches, monkeypatch):
    """The ``executable`` switch. On JAX an eager inference call runs the
    model's own executable with ``own`` and ``lean``, and with ``lean``
    ``predict`` too (Keras then leaves its step uncompiled): traced once per
    input shape, switch setting and compile options (counted by the ``network``
    switch's one ``keras.ops.map`` per trace), following the weights, equal to
    Keras' op-by-op call and to a user's ``jax.jit`` around it; not for a model
    set to ``run_eagerly``. Elsewhere only ``keras``."""
    if keras.backend.backend() != "jax":
        assert kernels.implementations("executable") == ["keras"] and kernels.resolve("executable") == "keras"
        for implementation in ("own", "lean"):
            with pytest.raises(ValueError, match=f"'executable' = '{implementation}' needs the jax backend"):
                kernels.set_kernel("executable", implementation)
        return
    import gc

    import jax

    from tests.tiny import images, randomize_batchnorm_statistics, tiny_model

    assert kernels.resolve("executable") == "lean"  # CI's machines: one CPU device
    maps = []
    ops_map = keras.ops.map
    monkeypatch.setattr(keras.ops, "map", lambda f, xs: maps.append(xs.shape[0]) or ops_map(f, xs))
    kernels.set_kernel("network", "per_image")
    model = tiny_model(classifier_activation=None)
    randomize_batchnorm_statistics(model)
    x = images(3)

    def call(implementation, run=lambda: model(x, training=False)):
        kernels.set_kernel("executable", implementation)
        return to_numpy(run())

    reference = call("keras")
    for implementation in ("own", "lean"):
        del maps[:]
        outputs = [call(implementation) for _ in range(2)]
        assert maps == [3]  # traced once, then run without Python
        model.compile(jit_compile=True)
        outputs.append(call(implementation, lambda: model.predict_on_batch(x)))
        # own: Keras compiles predict's step (one more trace); lean: the step calls the same executable
        assert maps == ([3, 3] if implementation == "own" else [3]) and model.jit_compile is True
        for out in outputs:
            np.testing.assert_allclose(out, reference, atol=1e-5)

    # A switch change after predict's function was built: the next predict builds it again.
    lean_step = model.predict_function
    np.testing.assert_allclose(call("own", lambda: model.predict_on_batch(x)), reference, atol=1e-5)
    assert maps == [3, 3] and model.predict_function is not lean_step  # Keras compiled its step
    lean_step = None  # it holds the model
    np.testing.assert_allclose(call("lean", lambda: model.predict_on_batch(x)), reference, atol=1e-5)
    assert maps == [3, 3]  # the lean executable again, no trace

    kernels.set_kernel("gelu", "fused")  # another switch setting: traced again
    del maps[:]
    np.testing.assert_allclose(call("lean"), reference, atol=1e-5)
    assert maps == [3]
    bias = model.layers[-1].bias  # new weights: the same executable reads them
    bias.assign(bias + 1.0)
    np.testing.assert_allclose(call("lean"), reference + 1.0, atol=1e-5)
    assert maps == [3]
    np.testing.assert_allclose(call("keras"), reference + 1.0, atol=1e-5)

    kernels.set_kernel("executable", "lean")
    traced = jax.jit(lambda t, n, images: model.stateless_call(t, n, images, training=False)[0])
    values = ([v.value for v in model.trainable_variables], [v.value for v in model.non_trainable_variables])
    np.testing.assert_allclose(np.asarray(traced(*values, x)), reference + 1.0, atol=1e-5)

    del maps[:]
    model.compile(run_eagerly=True)  # debugging: every layer's Python runs, op by op
    assert not kernels.uses_own_executable(model) and not kernels.predicts_through_own_executable(model)
    for _ in range(2):
        np.testing.assert_allclose(model.predict_on_batch(x), reference + 1.0, atol=1e-5)
    assert maps == [3, 3]

    cached = len(kernels._EXECUTABLES)
    model = None
    gc.collect()
    assert len(kernels._EXECUTABLES) == cached - 1  # the executables go with their model
