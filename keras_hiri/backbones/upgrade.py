"""The HIRI upgrade of a four-stage backbone (the paper's Table IX): take it
from ``S x S`` to ``2S x 2S`` input at little extra cost.

A four-stage backbone embeds the image with a stride-4 patch embedding of
width ``C1`` and runs its stages on the ``S/4 ... S/32`` grids. The upgrade
replaces that embedding with a *front* on the doubled input (HIRI-ViT's
five-stage, two-branch design, Sec. 4)::

    image 2S x 2S
      -> HRStem(C0)                 2S/4 = S/2 grid, two branches
      -> HRBlock(C0) x depth        the new stage ("stage 0"), two branches
      -> BatchNorm                  closes the stage (pyramid level P0)
      -> IRDSa(C1), stride 2        S/4 grid, width C1: what the embedding gave

and leaves everything after it alone, so the backbone's stages run on the same
grids, with the same weights' shapes, as at ``S``: the added cost is the front
on the high-resolution input, which the two-branch layers keep small.
``docs/DESIGN.md`` ("Table IX") says how ``C0`` and ``depth`` were chosen.
"""

import dataclasses

from keras_hiri import checks
from keras_hiri import naming
from keras_hiri.layers.blocks import HRBlock
from keras_hiri.layers.downsampling import IRDSa
from keras_hiri.layers.norm import batch_norm
from keras_hiri.layers.stem import HRStem


@dataclasses.dataclass(frozen=True)
class HiriUpgrade:
    """The front's numbers.

    Attributes:
        filters: ``C0``, the width of the HR stem and the new stage.
        depth: HR blocks in the new stage.
        mlp_ratio: the HR blocks' expansion.
    """

    filters: int = 24
    depth: int = 2
    mlp_ratio: float = 4

    def __post_init__(self):
        checks.int_at_least("filters", self.filters, owner="HiriUpgrade")
        checks.int_at_least("depth", self.depth, 0, owner="HiriUpgrade")
        checks.number_in("mlp_ratio", self.mlp_ratio, low_open=True, owner="HiriUpgrade")


def hiri_front(x, out_filters, upgrade=HiriUpgrade(), drop_path_rates=None, dtype=None):
    """Applies the upgrade's front to a channels-last image tensor ``x``.

    Layers are named as the backbone's (:mod:`keras_hiri.naming`): ``stem``,
    ``stage0_block{j}``, ``stage0_norm`` and ``stage1_downsample``.

    Args:
        x: a ``(B, 2S, 2S, 3)`` Keras tensor.
        out_filters: ``C1``, the width the backbone's first stage takes.
        upgrade: a :class:`HiriUpgrade`.
        drop_path_rates: one stochastic-depth rate per HR block (default 0).
        dtype: the layers' dtype policy.

    Returns:
        ``(stage0, out)``: the new stage's output (``S/2`` grid, ``C0``) and the
        ``(B, S/4, S/4, C1)`` tensor the backbone's first stage takes.
    """
    layout = {"data_format": "channels_last", "dtype": dtype}
    rates = list(drop_path_rates) if drop_path_rates is not None else [0.0] * upgrade.depth
    if len(rates) != upgrade.depth:
        raise ValueError(f"drop_path_rates needs one rate per HR block ({upgrade.depth}). "
                         f"Received: {len(rates)} rates")
    x = HRStem(upgrade.filters, name=naming.STEM, **layout)(x)
    for j, rate in enumerate(rates, start=1):
        x = HRBlock(upgrade.filters, upgrade.mlp_ratio, drop_path=rate, name=naming.block(0, j), **layout)(x)
    stage0 = batch_norm(naming.stage_norm(0), dtype=dtype)(x)
    return stage0, IRDSa(out_filters, name=naming.downsample(1), **layout)(stage0)
