"""Other backbones, plain and HIRI-upgraded: the networks of the paper's
Table IX, built from the upgrade kit (:mod:`keras_hiri.backbones.upgrade`).

    from keras_hiri import backbones
    plain = backbones.PVTv2("b2")                                 # 224 x 224
    upgraded = backbones.PVTv2("b2", hiri=True)                   # 448 x 448
    hrnet = backbones.HRNet("w18", hiri=True)
    small = backbones.DaViT({"widths": (32, 64, 96, 128), "depths": (1, 1, 1, 1),
                             "heads": (1, 2, 3, 4)}, hiri=True, input_shape=(128, 128, 3))

A variant is a name of the rows below or a dict of the same numbers.
"""

from keras_hiri.backbones.davit import DaViTNetwork
from keras_hiri.backbones.hrnet import HRNET_VARIANTS, HRNet
from keras_hiri.backbones.pvt_v2 import PVTv2Network
from keras_hiri.backbones.pyramid import PyramidModel, assemble, describe, resolve_variant, upgrade_of
from keras_hiri.backbones.upgrade import HiriUpgrade, hiri_front

# PVTv2 (Wang et al. 2022, Table 1) as timm's pvt_v2_b0..b2 define them.
PVT_V2_VARIANTS = {
    "b0": dict(widths=(32, 64, 160, 256), depths=(2, 2, 2, 2), heads=(1, 2, 5, 8),
               mlp_ratios=(8, 8, 4, 4), sr_ratios=(8, 4, 2, 1)),
    "b1": dict(widths=(64, 128, 320, 512), depths=(2, 2, 2, 2), heads=(1, 2, 5, 8),
               mlp_ratios=(8, 8, 4, 4), sr_ratios=(8, 4, 2, 1)),
    "b2": dict(widths=(64, 128, 320, 512), depths=(3, 4, 6, 3), heads=(1, 2, 5, 8),
               mlp_ratios=(8, 8, 4, 4), sr_ratios=(8, 4, 2, 1)),
}

# DaViT (Ding et al. 2022, Table 1); depths count (spatial, channel) block pairs.
DAVIT_VARIANTS = {
    "tiny": dict(widths=(96, 192, 384, 768), depths=(1, 1, 3, 1), heads=(3, 6, 12, 24)),
    "small": dict(widths=(96, 192, 384, 768), depths=(1, 1, 9, 1), heads=(3, 6, 12, 24)),
}

# The paper's Table IX: (network, variant, upgraded) -> (input side, params M, GFLOPs = GMACs).
TABLE_IX = {
    ("hrnet", "w18", False): (224, 21.3, 4.3),
    ("hrnet", "w18", True): (448, 21.4, 4.6),
    ("pvt_v2", "b2", False): (224, 25.4, 4.0),
    ("pvt_v2", "b2", True): (448, 25.5, 4.4),
    ("davit", "tiny", False): (224, 28.4, 4.5),
    ("davit", "tiny", True): (448, 28.5, 5.0),
}
# Table IX's tolerances (issue 37): parameters within 3 %, multiply-adds within 10 %.
PARAMS_TOLERANCE, GMACS_TOLERANCE = 0.03, 0.10

_NETWORKS = {"pvt_v2": (PVTv2Network, PVT_V2_VARIANTS), "davit": (DaViTNetwork, DAVIT_VARIANTS)}

_ARGS = """
    Args:
        variant: a name of ``{rows}`` or a dict of the same keys (a row of numbers).
        hiri: ``None``/``False``: the plain network; ``True``: upgraded with
            the default :class:`HiriUpgrade` (Table IX's rows); or a :class:`HiriUpgrade`.
        input_shape: ``(height, width, 3)``; default ``(224, 224, 3)``, or
            ``(448, 448, 3)`` when upgraded. ``None`` sides are allowed.
        include_top: average pooling and the classifier on top.
        classes: classifier width.
        pooling: without the top, ``None`` (the last stage's map), ``"avg"`` or ``"max"``.
        classifier_activation: applied to the classifier (``None``: logits).
        include_preprocessing: normalise ``[0, 255]`` RGB inside the model with
            the ImageNet mean and standard deviation.
        drop_path_rate: stochastic depth, linear over all blocks (the front's first).
        name: the model's name (default: the variant's, ``_hiri`` when upgraded).
        dtype: the layers' dtype policy (``None``: Keras' global one).

    Returns:
        A :class:`PyramidModel` (``pyramid_outputs`` P1..P4, and P0 when upgraded).
        Weights are randomly initialised: no trained weights exist for these models.
"""


def _build(network_name, variant, hiri, input_shape, include_top, classes, pooling, classifier_activation,
           include_preprocessing, drop_path_rate, name, dtype):
    network_cls, variants = _NETWORKS[network_name]
    numbers, label = resolve_variant(variant, variants)
    try:
        network = network_cls(**numbers)
    except TypeError as error:
        raise ValueError(f"variant {numbers!r} does not describe a {network_name} network: {error}") from None
    upgrade = upgrade_of(hiri)
    if input_shape is None:
        input_shape = (448, 448, 3) if upgrade is not None else (224, 224, 3)
    architecture, name = describe(network_name, numbers, label, upgrade, include_top, classes, name)
    return assemble(network, upgrade=upgrade, input_shape=input_shape, include_top=include_top,
                    classes=classes, pooling=pooling, classifier_activation=classifier_activation,
                    include_preprocessing=include_preprocessing, drop_path_rate=drop_path_rate,
                    name=name, architecture=architecture, dtype=dtype)


def PVTv2(variant="b2", hiri=None, input_shape=None, include_top=True, classes=1000, pooling=None,
          classifier_activation="softmax", include_preprocessing=True, drop_path_rate=0.0, name=None,
          dtype=None):
    return _build("pvt_v2", variant, hiri, input_shape, include_top, classes, pooling, classifier_activation,
                  include_preprocessing, drop_path_rate, name, dtype)


def DaViT(variant="tiny", hiri=None, input_shape=None, include_top=True, classes=1000, pooling=None,
          classifier_activation="softmax", include_preprocessing=True, drop_path_rate=0.0, name=None,
          dtype=None):
    return _build("davit", variant, hiri, input_shape, include_top, classes, pooling, classifier_activation,
                  include_preprocessing, drop_path_rate, name, dtype)


PVTv2.__doc__ = ("PVTv2 (:mod:`keras_hiri.backbones.pvt_v2`), plain or HIRI-upgraded.\n"
                 + _ARGS.format(rows=", ".join(PVT_V2_VARIANTS)))
DaViT.__doc__ = ("DaViT (:mod:`keras_hiri.backbones.davit`), plain or HIRI-upgraded.\n"
                 + _ARGS.format(rows=", ".join(DAVIT_VARIANTS)))

BUILDERS = {"pvt_v2": PVTv2, "davit": DaViT, "hrnet": HRNet}


def table_ix_model(network, variant, hiri, **kwargs):
    """The model of a :data:`TABLE_IX` row, at the row's input side."""
    side = TABLE_IX[(network, variant, bool(hiri))][0]
    return BUILDERS[network](variant, hiri=hiri, input_shape=(side, side, 3), **kwargs)


__all__ = ["DAVIT_VARIANTS", "DaViT", "HRNET_VARIANTS", "HRNet", "HiriUpgrade", "PVT_V2_VARIANTS", "PVTv2",
           "PyramidModel",
           "TABLE_IX", "assemble", "hiri_front", "table_ix_model"]
