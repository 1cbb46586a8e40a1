import pytest

import keras_hiri
from keras_hiri import variants
from keras_hiri.variants import HiriViTConfig, get_config

# Nothing here depends on the Keras backend (see tests/conftest.py).
pytestmark = pytest.mark.backend_independent


def test_table_one_rows():
    s, b, l = (variants.VARIANTS[k] for k in "SBL")
    assert s.widths == (32, 64, 128, 320, 512) and s.depths == (2, 2, 2, 9, 4)
    assert b.mlp_ratios == (4, 4, 5, 4, 5) and b.depths == (2, 2, 3, 17, 4)
    assert l.num_heads[3:] == (7, 10) and l.widths == (80, 160, 224, 448, 640)
    for config in (s, b, l):
        # Head dim 64 in every Transformer stage.
        assert all(config.widths[i] // config.heads(i) == 64 for i in (3, 4))


@pytest.mark.parametrize("name", ["S", "s", "hiri_vit_s", "HIRI-ViT-S"])
def test_names_resolve(name):
    assert get_config(name) is variants.VARIANTS["S"]
    assert variants.variant_name(name) == "S"


def test_custom_config_passes_through_and_has_no_letter():
    custom = variants.VARIANTS["S"].replace(depths=(1, 1, 1, 1, 1))
    assert get_config(custom) is custom
    assert variants.variant_name(custom) is None


@pytest.mark.parametrize(
    "changes,message",
    [
        ({"depths": (1, 1)}, "one entry per stage"),
        ({"depths": (1, 1, 0, 1, 1)}, r"HiriViTConfig.depths\[2\] must be an int >= 1"),
        ({"block_types": ("hr",) * 4 + ("attention",)}, "Unknown block type"),
        ({"stem": "x"}, "Unknown stem"),
        ({"downsample": "x"}, "Unknown downsample"),
        ({"widths": (64, 0, 320, 512, 640)}, r"HiriViTConfig.widths\[1\] must be an int >= 1"),
        ({"mlp_ratios": (8, 8, 4, 4, 0)}, r"HiriViTConfig.mlp_ratios\[4\] must be a number > 0"),
        ({"num_heads": (None, None, None, 3, 10)}, "HiriViTConfig stage 4: dim must be divisible by num_heads"),
        ({"head_dim": 0}, "HiriViTConfig.head_dim must be an int >= 1"),
    ],
)
def test_config_validation(changes, message):
    with pytest.raises(ValueError, match=message):
        variants.VARIANTS["S"].replace(**changes)


def test_single_stage_is_rejected():
    with pytest.raises(ValueError, match="at least 2 stages"):
        HiriViTConfig(widths=(8,), depths=(1,), mlp_ratios=(2,), num_heads=(None,), block_types=("hr",))


def test_default_heads_from_head_dim():
    config = variants.VARIANTS["S"].replace(block_types=("hr", "hr", "transformer", "transformer", "transformer"))
    assert config.heads(2) == 2  # 128 / 64


def test_variant_shortcuts_document_every_argument():
    """keras.applications form: explicit arguments and a full Args docstring."""
    import inspect

    for fn in (keras_hiri.HiriViTS, keras_hiri.HiriViTB, keras_hiri.HiriViTL):
        params = inspect.signature(fn).parameters
        assert not any(p.kind is p.VAR_KEYWORD for p in params.values())
        for name in params:
            assert f"{name}:" in fn.__doc__, (fn.__name__, name)
    assert "variant:" in keras_hiri.HiriViT.__doc__
