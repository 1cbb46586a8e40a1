import collections
import copy
import functools

import keras
import numpy as np
import pytest

from keras_hiri.layers import blocks, downsampling, head, stem
from keras_hiri.layers.composite import sublayers, walk
from keras_hiri.layers.conv import Conv2D, conv2d
from keras_hiri.layers.drop_path import DropPath
from keras_hiri.layers.init import TruncatedNormal, VarianceScaling, conv_initializer, dense_initializer
from keras_hiri.layers.resample import add_upsampled_2x, avg_pool_2x2_ceil, upsample_2x_to
from keras_hiri.variants import halve
from keras_hiri import ops as hiri_ops
from tests.helpers import assert_layer_round_trip, to_numpy
from tests.tiny import tiny_model


def reference_ceil_avg_pool(x):
    """PyTorch avg_pool2d(2, 2, ceil_mode=True, count_include_pad=False), in numpy."""
    b, h, w, c = x.shape
    out = np.zeros((b, -(-h // 2), -(-w // 2), c), x.dtype)
    for i in range(out.shape[1]):
        for j in range(out.shape[2]):
            out[:, i, j] = x[:, 2 * i : 2 * i + 2, 2 * j : 2 * j + 2].mean(axis=(1, 2))
    return out


@pytest.mark.parametrize("shape", [(2, 6, 4, 3), (2, 7, 5, 3), (1, 1, 3, 2)])
def test_ceil_avg_pool_excludes_padding(shape):
    x = np.random.default_rng(0).normal(size=shape).astype("float32")
    got = to_numpy(avg_pool_2x2_ceil(keras.ops.convert_to_tensor(x)))
    np.testing.assert_allclose(got, reference_ceil_avg_pool(x), atol=1e-6)


@pytest.mark.parametrize("n", [6, 7])
def test_strided_conv_pads_symmetrically(n):
    """A stride-2 3x3 conv pads one pixel on every side (PyTorch padding=1),
    and the int padding survives a config round trip."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(1, n, n, 2)).astype("float32")
    conv = conv2d(3, 3, 2, use_bias=False)
    got = to_numpy(conv(x))
    kernel = to_numpy(conv.kernel)
    padded = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    m = -(-n // 2)
    want = np.zeros((1, m, m, 3), "float32")
    for i in range(m):
        for j in range(m):
            patch = padded[0, 2 * i : 2 * i + 3, 2 * j : 2 * j + 3]
            want[0, i, j] = np.tensordot(patch, kernel, axes=3)
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, atol=1e-5)
    config = conv.get_config()
    assert config["padding"] == 1
    clone = Conv2D.from_config(config)
    assert clone.compute_output_shape((None, n, n, 2)) == (None, m, m, 3)
    inputs = keras.Input((n, n, 2))
    assert clone(inputs).shape == (None, m, m, 3)


@pytest.mark.parametrize("padding", [-1, "full"])
def test_conv_rejects_bad_padding(padding):
    with pytest.raises(ValueError, match="padding"):
        Conv2D(2, 3, padding=padding)


def test_upsample_crops_to_odd_grid():
    like = np.zeros((1, 5, 3, 1), "float32")
    x = np.arange(6, dtype="float32").reshape(1, 3, 2, 1)
    got = to_numpy(upsample_2x_to(x, like))[0, ..., 0]
    np.testing.assert_array_equal(got, [[0, 0, 1], [0, 0, 1], [2, 2, 3], [2, 2, 3], [4, 4, 5]])


@pytest.mark.parametrize("grid", [(5, 3), (6, 4), (4, 3)])
def test_add_upsampled_2x_repeats_low_and_crops_to_the_grid(grid):
    x = np.random.default_rng(0).normal(size=(2, *grid, 3)).astype("float32")
    low = np.random.default_rng(1).normal(size=(2, (grid[0] + 1) // 2, (grid[1] + 1) // 2, 3)).astype("float32")
    want = x + low.repeat(2, axis=1).repeat(2, axis=2)[:, :grid[0], :grid[1]]
    np.testing.assert_array_equal(to_numpy(add_upsampled_2x(x, low)), want)


def test_add_upsampled_2x_on_a_grid_unknown_until_called():
    """The reshape path needs static even grids; a dynamic one takes the other."""
    x_in, low_in = keras.Input((None, None, 3)), keras.Input((None, None, 3))
    model = keras.Model([x_in, low_in], keras.layers.Lambda(lambda t: add_upsampled_2x(*t))([x_in, low_in]))
    x = np.random.default_rng(0).normal(size=(1, 5, 4, 3)).astype("float32")
    low = np.random.default_rng(1).normal(size=(1, 3, 2, 3)).astype("float32")
    want = x + low.repeat(2, axis=1).repeat(2, axis=2)[:, :5, :4]
    np.testing.assert_allclose(to_numpy(model([x, low])), want, rtol=0, atol=0)


def test_drop_path_is_identity_in_inference_and_drops_whole_samples_in_training():
    layer = DropPath(0.5, seed=1)
    x = np.ones((64, 3, 3, 2), "float32")
    np.testing.assert_array_equal(to_numpy(layer(x, training=False)), x)
    y = to_numpy(layer(x, training=True))
    per_sample = y.reshape(64, -1)
    # Each sample is either dropped (all 0) or kept and rescaled by 1/keep (all 2).
    assert set(np.unique(per_sample)) <= {0.0, 2.0}
    assert all(len(np.unique(row)) == 1 for row in per_sample)
    assert 0 < (per_sample[:, 0] == 0).sum() < 64
    assert_layer_round_trip(layer, x, training=False)


@pytest.mark.parametrize("rate", [-0.1, 1.0])
def test_drop_path_rejects_bad_rate(rate):
    with pytest.raises(ValueError, match="rate"):
        DropPath(rate)


def test_halve_is_ceil():
    assert [halve(n) for n in (1, 2, 7, 8, None)] == [1, 1, 4, 4, None]


# ------------------------------------------------ build, config and dtype policy


def test_model_config_round_trip_is_idempotent():
    model = tiny_model()
    config = model.get_config()
    # from_config consumes the dict it is given (Keras pops its keys): pass a copy.
    again = model.__class__.from_config(copy.deepcopy(config)).get_config()
    assert again == config


@pytest.mark.parametrize("layer_cls,args", [
    (blocks.TransformerBlock, (32, 2)), (blocks.HRBlock, (32,)), (blocks.CFFNBlock, (32,)),
    (stem.HRStem, (16,)), (stem.ConvStem, (16,)), (stem.ViTStem, (16,)),
    (downsampling.IRDSa, (16,)), (downsampling.IRDSb, (16,)), (downsampling.PlainDownsample, (16,)),
    (head.ClassAttentionHead, (32, 2, 2)),
])
def test_composite_layers_build_every_sublayer_from_their_build_config(layer_cls, args):
    layer = layer_cls(*args, name="block")
    assert sublayers(layer) == []  # created in build(), as keras-hub's layers do
    layer.build((None, 9, 7, 32))
    assert sublayers(layer)
    assert all(sub.built for sub in walk(layer))
    revived = layer_cls.from_config(layer.get_config())
    revived.build_from_config(layer.get_build_config())
    assert revived.get_build_config() == layer.get_build_config()
    assert [w.shape for w in revived.weights] == [w.shape for w in layer.weights]
    assert [w.path for w in revived.weights] == [w.path for w in layer.weights]
    # The shape rule the build relied on is the one call follows.
    out = layer(np.random.default_rng(0).normal(size=(2, 9, 7, 32)).astype("float32"))
    assert tuple(out.shape) == layer.compute_output_shape((2, 9, 7, 32))


def test_sublayers_are_the_layer_attributes_on_every_backend():
    layer = blocks.TransformerBlock(32, 2, name="block")
    layer.build((None, 4, 4, 32))
    names = {sub.name for sub in sublayers(layer)}
    assert names == {"block_norm1", "block_attn", "block_norm2", "block_cffn", "block_drop_path"}
    assert {sub.name for sub in walk(layer)} >= names | {"block_attn_q", "block_cffn_dw"}


def test_assembling_a_model_does_not_trace_composite_calls(monkeypatch):
    """Keras builds each composite through its ``build`` (sub-layers built on
    the shapes their ``compute_output_shape`` gives) and takes the functional
    output from ``compute_output_shape``: no ``call`` runs until data does."""
    calls = collections.Counter()
    for cls in (blocks.TransformerBlock, blocks.CFFN, blocks.MultiHeadSelfAttention):
        def counted(call, name):
            @functools.wraps(call)  # Keras reads call's signature
            def wrapper(self, *args, **kwargs):
                calls[name] += 1
                return call(self, *args, **kwargs)
            return wrapper
        monkeypatch.setattr(cls, "call", counted(cls.call, cls.__name__))
    inputs = keras.Input((5, 3, 32))
    block = blocks.TransformerBlock(32, 2, name="block")
    outputs = block(inputs)
    assert not calls
    assert tuple(outputs.shape) == (None, 5, 3, 32) and outputs.dtype == "float32"
    assert all(sub.built for sub in walk(block))
    model = keras.Model(inputs, outputs)
    x = np.random.default_rng(0).normal(size=(2, 5, 3, 32)).astype("float32")
    assert to_numpy(model(x)).shape == (2, 5, 3, 32)
    assert calls["TransformerBlock"] >= 1 and calls["CFFN"] >= 1
    assert tuple(block(keras.Input((4, 4, 32))).shape) == (None, 4, 4, 32)


@pytest.mark.parametrize("policy", ["bfloat16", "mixed_bfloat16", "mixed_float16"])
def test_dtype_argument_reaches_every_sublayer(policy):
    layer = blocks.TransformerBlock(32, 2, dtype=policy, name="block")
    layer.build((None, 4, 4, 32))
    expected = keras.dtype_policies.get(policy)
    for sub in walk(layer):
        assert sub.compute_dtype == expected.compute_dtype, sub.name
        assert sub.variable_dtype == expected.variable_dtype, sub.name
    for weight in layer.weights:
        assert weight.dtype == expected.variable_dtype, weight.path
    out = layer(np.ones((1, 4, 4, 32), "float32"))
    assert keras.backend.standardize_dtype(out.dtype) == expected.compute_dtype


@pytest.fixture
def draws(monkeypatch):
    """``draws("host")``: every int-seeded initialiser draws with NumPy (JAX's
    choice) on this backend; ``draws("keras")``: Keras' own sampler."""
    def choose(where):
        monkeypatch.setattr(hiri_ops, "draws_on_host",
                            (lambda seed: isinstance(seed, int)) if where == "host" else (lambda seed: False))
    return choose


def test_dense_initializer_draws_keras_truncated_normal_on_the_host(draws):
    """Truncated at two standard deviations (redrawn, not clipped), the same
    values for the same int seed on every call and every backend (NumPy's
    draw), and Keras' config."""
    draws("host")
    init = TruncatedNormal(stddev=0.02, seed=7)
    values = to_numpy(init((256, 512)))
    assert values.dtype == np.float32 and values.shape == (256, 512)
    assert np.abs(values).max() <= 0.04 + 1e-7
    assert np.abs(values).max() > 0.039  # redrawn near the bound, not clipped far inside it
    assert not np.any(np.abs(values) == 0.04)  # nothing piled up at the bound
    # A unit normal truncated at +-2 has standard deviation 0.880.
    assert values.std() == pytest.approx(0.02 * 0.8796, rel=0.01)
    assert abs(values.mean()) < 1e-3
    np.testing.assert_array_equal(to_numpy(init((256, 512))), values)
    untouched = np.random.default_rng(7).standard_normal((256, 512), dtype=np.float32)
    inside = np.abs(untouched) <= 2
    np.testing.assert_allclose(values[inside], 0.02 * untouched[inside], rtol=1e-6)
    assert not np.array_equal(to_numpy(TruncatedNormal(stddev=0.02, seed=8)((256, 512))), values)
    assert np.abs(to_numpy(TruncatedNormal(stddev=0.02, seed=-7)((4, 4)))).max() <= 0.04 + 1e-7
    config = init.get_config()
    assert config == keras.initializers.TruncatedNormal(stddev=0.02, seed=7).get_config()
    assert keras.initializers.get(keras.saving.serialize_keras_object(init)).__class__ is TruncatedNormal


@pytest.mark.parametrize("shape, fan", [((3, 3, 16, 32), 9 * 32), ((7, 7, 64, 1), 49), ((48, 96), 96)])
def test_conv_initializer_is_keras_fan_out_normal_drawn_on_the_host(draws, shape, fan):
    draws("host")
    init = conv_initializer()
    assert isinstance(init, VarianceScaling) and isinstance(init.seed, int)
    values = to_numpy(init(shape))
    expected = np.sqrt(2.0 / fan) * np.random.default_rng(init.seed).standard_normal(shape, dtype=np.float32)
    np.testing.assert_allclose(values, expected, rtol=1e-6)
    keras_values = to_numpy(keras.initializers.VarianceScaling(
        scale=2.0, mode="fan_out", distribution="untruncated_normal", seed=3)(shape))
    assert values.std() == pytest.approx(keras_values.std(), rel=0.15)  # Keras' scale (and fans)


def test_initializers_off_the_host_are_keras_own(draws):
    """Off the host draw: exactly what Keras' classes give for the same seed."""
    draws("keras")
    pairs = [(TruncatedNormal(stddev=0.02, seed=5), keras.initializers.TruncatedNormal(stddev=0.02, seed=5)),
             (VarianceScaling(scale=2.0, mode="fan_out", distribution="untruncated_normal", seed=5),
              keras.initializers.VarianceScaling(scale=2.0, mode="fan_out", distribution="untruncated_normal",
                                                 seed=5))]
    for ours, theirs in pairs:
        np.testing.assert_array_equal(to_numpy(ours((3, 3, 8, 16))), to_numpy(theirs((3, 3, 8, 16))))


def test_host_initializers_leave_other_cases_to_keras(draws):
    """A SeedGenerator seed, the uniform distribution and explicit fan axes
    take Keras' own sampler; float64 and bfloat16 come out as Keras' own
    (JAX without x64 makes float64 float32)."""
    draws("host")
    generator = keras.random.SeedGenerator(1)
    init = TruncatedNormal(stddev=0.02, seed=generator)
    first, second = to_numpy(init((64, 64))), to_numpy(init((64, 64)))
    assert not np.array_equal(first, second)  # a generator advances, as in Keras
    assert np.abs(first).max() <= 0.04 + 1e-6
    uniform = VarianceScaling(scale=2.0, mode="fan_out", distribution="uniform", seed=1)
    limit = np.sqrt(3 * 2.0 / 64)
    values = to_numpy(uniform((32, 64)))
    assert np.abs(values).max() <= limit and values.std() > limit / 2  # uniform, not normal(0, limit / sqrt 3)
    for dtype in ("float64", "bfloat16"):
        out = TruncatedNormal(stddev=0.02, seed=1)((8, 8), dtype=dtype)
        reference = keras.initializers.TruncatedNormal(stddev=0.02, seed=1)((8, 8), dtype=dtype)
        assert keras.backend.standardize_dtype(out.dtype) == keras.backend.standardize_dtype(reference.dtype)


def test_a_seeded_build_gives_the_same_weights():
    keras.utils.set_random_seed(3)
    first = [to_numpy(w) for w in tiny_model().weights]
    keras.utils.set_random_seed(3)
    second = [to_numpy(w) for w in tiny_model().weights]
    for a, b in zip(first, second):
        np.testing.assert_array_equal(a, b)
    assert any(a.std() > 0 for a in first)


@pytest.mark.runs_in("jax")
def test_initializers_compile_no_xla_program_on_jax():
    """Keras' samplers compile an XLA program for every new kernel shape on
    JAX (HIRI-ViT-S: 128 at build); the host-drawn ones, JAX's default,
    compile none."""
    assert hiri_ops.draws_on_host(5)
    import jax.monitoring

    compiles = []

    def listener(event, duration, **kwargs):
        if event.endswith("backend_compile_duration"):
            compiles.append(event)

    jax.monitoring.register_event_duration_secs_listener(listener)
    try:
        conv_initializer()((5, 5, 11, 13))
        dense_initializer()((17, 19))
        assert compiles == []
        keras.initializers.TruncatedNormal(stddev=0.02)((23, 29))
        assert compiles  # the counter sees Keras' sampler compile
    finally:
        jax.monitoring.unregister_event_duration_listener(listener)


@pytest.mark.runs_in("jax")
def test_jax_builds_draw_each_weight_once_on_the_host(monkeypatch):
    """Tracing a layer reads weights not yet initialised, for which Keras draws
    a placeholder: while JAX traces, that draw is Keras' (abstract, free), so
    NumPy draws each kernel once, for its real value."""
    assert hiri_ops.draws_on_host(5)
    draws = []
    host_normal = hiri_ops.host_normal

    def counting(seed, shape, *args):
        draws.append(shape)
        return host_normal(seed, shape, *args)

    monkeypatch.setattr(hiri_ops, "host_normal", counting)
    model = tiny_model()
    kernels_2d = [w for w in model.weights if len(w.shape) >= 2]
    assert len(draws) == len(kernels_2d) > 0
