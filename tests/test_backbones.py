"""The Table IX networks: PVTv2 and DaViT, plain and HIRI-upgraded."""

import os

import keras
import numpy as np
import pytest

import keras_hiri
from keras_hiri import backbones
from keras_hiri.backbones import PARAMS_TOLERANCE, GMACS_TOLERANCE, TABLE_IX
from tests.helpers import infer, to_numpy

# Trainable parameters and multiply-adds of each Table IX model, pinned. The
# plain networks' are timm's hrnet_w18 / pvt_v2_b2 / davit_tiny exactly
# (21,299,004 / 25,362,856 / 28,360,168 parameters; 4.2835 / 4.0267 / 4.5218
# GMACs by PyTorch's FlopCounterMode on timm's modules, which also give our
# logits on their weights: `python benchmarks/table9_cost.py`).
PINNED = {
    ("hrnet", "w18", False): (21_299_004, 4_283_537_072),
    ("hrnet", "w18", True): (21_325_932, 4_544_803_504),
    ("pvt_v2", "b2", False): (25_362_856, 4_026_734_592),
    ("pvt_v2", "b2", True): (25_419_032, 4_395_779_072),
    ("davit", "tiny", False): (28_360_168, 4_521_801_216),
    ("davit", "tiny", True): (28_436_632, 4_953_967_104),
}

SMALL_PVT = dict(widths=(16, 32, 48, 64), depths=(1, 1, 1, 1), heads=(1, 2, 3, 4), mlp_ratios=(8, 8, 4, 4),
                 sr_ratios=(8, 4, 2, 1))
SMALL_DAVIT = dict(widths=(16, 32, 48, 64), depths=(1, 1, 1, 1), heads=(1, 2, 3, 4))
SMALL_HRNET = dict(width=12, modules=(1, 1, 1))  # not 8: SegFormer names its projections by level width
SMALL_UPGRADE = backbones.HiriUpgrade(filters=8, depth=1)


def _images(side, batch=2, seed=0):
    return np.random.default_rng(seed).uniform(0, 255, (batch, side, side, 3)).astype("float32")


@pytest.mark.parametrize("key", list(TABLE_IX), ids=["-".join(map(str, k)) for k in TABLE_IX])
def test_table_ix_parameters_and_macs(key):
    model = backbones.table_ix_model(*key)
    side, params_m, gflops = TABLE_IX[key]
    assert tuple(model.inputs[0].shape[1:]) == (side, side, 3)
    profile = keras_hiri.profile(model)
    assert (profile.params, profile.macs) == PINNED[key]
    assert abs(profile.params / 1e6 - params_m) <= PARAMS_TOLERANCE * params_m
    assert abs(profile.gmacs - gflops) <= GMACS_TOLERANCE * gflops


@pytest.mark.runs_in("torch")
@pytest.mark.parametrize("key", list(TABLE_IX), ids=["-".join(map(str, k)) for k in TABLE_IX])
def test_an_independent_counter_agrees(key):
    """PyTorch's FlopCounterMode over one real forward pass (the aten ops that
    ran) and PyTorch's own parameter list give the project's counts."""
    import torch

    from keras_hiri.backbones.costs import torch_macs

    model = backbones.table_ix_model(*key)
    side = TABLE_IX[key][0]
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert (trainable, torch_macs(model, (1, side, side, 3))) == PINNED[key]
    assert isinstance(model.trainable_weights[0].value, torch.Tensor)


@pytest.mark.parametrize("build, variant", [(backbones.PVTv2, SMALL_PVT), (backbones.DaViT, SMALL_DAVIT),
                                            (backbones.HRNet, SMALL_HRNET)])
def test_upgraded_network_keeps_the_plain_grids_at_twice_the_input(build, variant):
    plain = build(variant, input_shape=(64, 64, 3), include_top=False)
    upgraded = build(variant, hiri=SMALL_UPGRADE, input_shape=(128, 128, 3), include_top=False)
    assert list(upgraded.pyramid_outputs) == ["P0", "P1", "P2", "P3", "P4"]
    for key, level in plain.pyramid_outputs.items():
        assert tuple(upgraded.pyramid_outputs[key].shape) == tuple(level.shape)
    assert tuple(upgraded.pyramid_outputs["P0"].shape) == (None, 32, 32, 8)
    assert upgraded.hidden_dims == [8] + plain.hidden_dims
    # the backbone's own layers are unchanged: only the stem is replaced by the front
    shapes = {w.path: w.shape for w in plain.weights if not w.path.startswith("stem")}
    assert shapes.items() <= {w.path: w.shape for w in upgraded.weights}.items()


@pytest.mark.parametrize("build, variant", [(backbones.PVTv2, SMALL_PVT), (backbones.DaViT, SMALL_DAVIT),
                                            (backbones.HRNet, SMALL_HRNET)])
def test_upgraded_network_saves_and_loads_as_keras(build, variant, tmp_path):
    extra = {} if build is backbones.HRNet else {"drop_path_rate": 0.1}
    model = build(variant, hiri=SMALL_UPGRADE, input_shape=(128, 128, 3), classes=5, **extra)
    x = _images(128)
    expected = infer(model, x)
    assert expected.shape == (2, 5)
    path = os.path.join(tmp_path, "upgraded.keras")
    model.save(path)
    revived = keras.saving.load_model(path)
    assert isinstance(revived, backbones.PyramidModel)
    assert revived.levels == model.levels and revived.architecture == model.architecture
    np.testing.assert_allclose(infer(revived, x), expected, atol=1e-5)


def test_window_attention_pads_grids_that_are_not_whole_windows():
    # 80 px -> 20, 10, 5, 3 grids: none is a multiple of the window (7)
    model = backbones.DaViT(SMALL_DAVIT, input_shape=(80, 80, 3), include_top=False, pooling="avg")
    assert infer(model, _images(80)).shape == (2, 64)


@pytest.mark.parametrize("build, variant", [(backbones.PVTv2, SMALL_PVT), (backbones.DaViT, SMALL_DAVIT)])
def test_dynamic_sides_compute_what_a_fixed_input_does(build, variant):
    """``None`` sides (TensorFlow graphs then see tensor shapes: DaViT's window
    padding is decided at run time) give the fixed-size model's output."""
    dynamic = build(variant, hiri=SMALL_UPGRADE, input_shape=(None, None, 3), include_top=False, pooling="avg")
    fixed = build(variant, hiri=SMALL_UPGRADE, input_shape=(80, 112, 3), include_top=False, pooling="avg")
    fixed.set_weights(dynamic.get_weights())
    x = _images(112)[:, :80]
    np.testing.assert_allclose(infer(dynamic, x), infer(fixed, x), atol=1e-5)
    assert infer(dynamic, _images(96)).shape == (2, 64)


def test_arguments_are_checked():
    with pytest.raises(ValueError, match="variant must be one of \\['b0', 'b1', 'b2'\\].*Received: variant='b9'"):
        backbones.PVTv2("b9")
    with pytest.raises(ValueError, match="does not describe a davit network"):
        backbones.DaViT({"widths": (8,)})
    with pytest.raises(ValueError, match="hiri must be True, False, None or a HiriUpgrade. Received: hiri=2"):
        backbones.PVTv2(SMALL_PVT, hiri=2)
    with pytest.raises(ValueError, match="input_shape must be .*Received: input_shape=\\(64, 64, 1\\)"):
        backbones.PVTv2(SMALL_PVT, input_shape=(64, 64, 1))
    with pytest.raises(ValueError, match="multiples of 64 .*Received: input_shape=\\(224, 224, 3\\)"):
        backbones.HRNet(SMALL_HRNET, hiri=True, input_shape=(224, 224, 3))


def _copy_mit_weights(mit, pvt, depths, sr_ratios):
    """keras-hub MiT weights -> :func:`keras_hiri.backbones.PVTv2` (``k`` and
    ``v`` fused into ``kv``), read in MiT's creation order."""
    source = iter(to_numpy(w) for w in mit.weights)
    target = {w.path: w for w in pvt.weights}

    def put(prefix, *names):
        for name in names:
            target[f"{prefix}/{name}"].assign(next(source))

    for stage, (depth, sr) in enumerate(zip(depths, sr_ratios), start=1):
        embed = "stem" if stage == 1 else f"stage{stage}_downsample"
        put(embed, f"{embed}_conv/kernel", f"{embed}_conv/bias", f"{embed}_norm/gamma", f"{embed}_norm/beta")
        for j in range(1, depth + 1):
            b = f"stage{stage}_block{j}"
            put(b, f"{b}_norm1/gamma", f"{b}_norm1/beta")
            put(f"{b}/{b}_attn", f"{b}_attn_q/kernel", f"{b}_attn_q/bias")
            k, kb, v, vb = (next(source) for _ in range(4))
            target[f"{b}/{b}_attn/{b}_attn_kv/kernel"].assign(np.concatenate([k, v], axis=1))
            target[f"{b}/{b}_attn/{b}_attn_kv/bias"].assign(np.concatenate([kb, vb]))
            put(f"{b}/{b}_attn", f"{b}_attn_proj/kernel", f"{b}_attn_proj/bias")
            if sr > 1:
                put(b, f"{b}_sr/kernel", f"{b}_sr/bias", f"{b}_sr_norm/gamma", f"{b}_sr_norm/beta")
            put(b, f"{b}_norm2/gamma", f"{b}_norm2/beta")
            put(f"{b}/{b}_mlp", *(f"{b}_mlp_{n}/{w}" for n in ("fc1", "dw", "fc2") for w in ("kernel", "bias")))
        put(f"stage{stage}_norm", "gamma", "beta")
    assert next(source, None) is None


def test_pvt_v2_computes_keras_hubs_mit_where_they_match():
    """With MiT's Mix-FFN ratio (4), keras-hub's MiTBackbone and PVTv2 compute
    the same pyramid from the same weights; what remains is the stage norms'
    epsilon (MiT 1e-5, PVTv2 1e-6)."""
    keras_hub = pytest.importorskip("keras_hub")
    depths, heads, sr_ratios, widths = (1, 2), (1, 2), (4, 2), (16, 32)
    mit = keras_hub.models.MiTBackbone(
        layerwise_depths=list(depths), num_layers=2, layerwise_num_heads=list(heads),
        layerwise_sr_ratios=list(sr_ratios), max_drop_path_rate=0.0, layerwise_patch_sizes=[7, 3],
        layerwise_strides=[4, 2], image_shape=(64, 64, 3), hidden_dims=list(widths))
    pvt = backbones.PVTv2(dict(widths=widths, depths=depths, heads=heads, mlp_ratios=(4, 4), sr_ratios=sr_ratios),
                          input_shape=(64, 64, 3), include_top=False, include_preprocessing=False)
    _copy_mit_weights(mit, pvt, depths, sr_ratios)
    x = np.random.default_rng(1).normal(size=(2, 64, 64, 3)).astype("float32")
    ours = keras.Model(pvt.inputs, pvt.pyramid_outputs)(x)
    theirs = keras.Model(mit.inputs, mit.pyramid_outputs)(x)
    for key in ("P1", "P2"):
        np.testing.assert_allclose(to_numpy(ours[key]), to_numpy(theirs[key]), atol=2e-4)


@pytest.mark.parametrize("build, variant", [(backbones.PVTv2, SMALL_PVT), (backbones.HRNet, SMALL_HRNET)])
def test_keras_hub_segformer_runs_on_the_upgraded_network(build, variant):
    keras_hub = pytest.importorskip("keras_hub")
    encoder = build(variant, hiri=SMALL_UPGRADE, input_shape=(128, 128, 3), include_top=False)
    segformer = keras_hub.models.SegFormerBackbone(image_encoder=encoder, projection_filters=16)
    segmenter = keras_hub.models.SegFormerImageSegmenter(backbone=segformer, num_classes=3)
    x = _images(128)
    logits = to_numpy(segmenter(x, training=False))
    assert logits.shape == (2, 128, 128, 3)  # SegFormer fuses the levels at P1's grid, then resizes to the input
    assert tuple(segformer.feature_extractor.output["P1"].shape)[:3] == (None, 16, 16)  # stride 8: plain@64's stride 4
    segmenter.compile(optimizer=keras.optimizers.SGD(0.1),
                      loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    before = [to_numpy(w).copy() for w in encoder.trainable_weights]
    loss = segmenter.train_on_batch(x, np.random.default_rng(0).integers(0, 3, (2, 128, 128, 1)))
    assert np.all(np.isfinite(loss))
    changed = [not np.array_equal(b, to_numpy(w)) for b, w in zip(before, encoder.trainable_weights)]
    # (at 128 px every attention has >= 4 keys: with one key, q would get no gradient)
    assert all(changed), [w.path for w, c in zip(encoder.trainable_weights, changed) if not c]


@pytest.mark.runs_in("torch")
def test_keras_hub_segformer_trains_on_pvt_v2_b2_hiri_at_448():
    """The real Table IX encoder (eager PyTorch: the cheapest backend to run it
    once; the small one above runs on every backend)."""
    keras_hub = pytest.importorskip("keras_hub")
    encoder = backbones.PVTv2("b2", hiri=True, include_top=False)
    segmenter = keras_hub.models.SegFormerImageSegmenter(
        backbone=keras_hub.models.SegFormerBackbone(image_encoder=encoder, projection_filters=64), num_classes=2)
    segmenter.compile(optimizer=keras.optimizers.SGD(0.01),
                      loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    x = _images(448, batch=1)
    assert to_numpy(segmenter(x, training=False)).shape == (1, 448, 448, 2)
    before = to_numpy(encoder.get_layer("stem").trainable_weights[0]).copy()
    loss = segmenter.train_on_batch(x, np.zeros((1, 448, 448, 1), "int32"))
    assert np.all(np.isfinite(loss))
    assert not np.array_equal(before, to_numpy(encoder.get_layer("stem").trainable_weights[0]))
