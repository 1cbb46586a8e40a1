"""HIRI-ViT variants: Table I of the paper as rows of numbers.

A variant is a :class:`HiriViTConfig`; the builder reads nothing else. Custom
(e.g. tiny test) networks are a ``HiriViTConfig`` too, passed where a variant
name goes.
"""

import dataclasses
import math

from keras_hiri import checks

STAGE_BLOCK_TYPES = ("hr", "cffn", "transformer")
# The norm each block type is written for (Sec. 4.4): BN for the convolutional
# blocks of the high-resolution stages, LN for the Transformer stages.
BLOCK_NORMS = {"hr": "bn", "cffn": "bn", "transformer": "ln"}
# ``pin_late_grids``: the stage of nominal stride 16 (stage 3 of five) runs on
# at least the 448 grid, 448 / 16 = 28 (what the paper's 224/384 costs need).
PINNED_STRIDE = 16
PINNED_MIN_GRID = 28


def halve(n):
    """Grid size after one stride-2 op: ``ceil(n / 2)`` (``None`` stays ``None``)."""
    return None if n is None else -(-n // 2)


@dataclasses.dataclass(frozen=True)
class StageSpec:
    """Everything the builder needs to build one stage (``stage`` counts from 1).

    Attributes:
        downsample: ``"irds_a"``, ``"irds_b"``, ``"plain"``, or ``None`` for
            the first stage (the stem feeds it).
        strides: of the downsampling: 2, or 1 where a pinned grid is already
            reached.
        resize_to: the pinned grid the downsampled map is resized to, or
            ``None``.
        grid: ``(height, width)`` the stage runs on (``None`` sides for a
            dynamic input).
    """

    stage: int
    width: int
    depth: int
    block: str
    norm: str
    mlp_ratio: float
    heads: object
    downsample: object
    strides: int
    resize_to: object
    grid: tuple


STEM_TYPES = ("hr", "conv", "vit")
DOWNSAMPLE_TYPES = ("irds", "plain")


@dataclasses.dataclass(frozen=True)
class HiriViTConfig:
    """Architecture numbers of one network.

    Attributes:
        widths: channels ``C_i`` of each stage (``widths[0]`` is also the stem's).
        depths: blocks per stage.
        mlp_ratios: expansion ``E_i`` of each stage's FFN / HR low-res branch.
        num_heads: heads ``H_i`` per stage; ``None`` for stages without
            attention (a Transformer stage given ``None`` uses ``C_i / head_dim``).
        block_types: ``"hr"``, ``"cffn"`` or ``"transformer"`` per stage.
        stem: ``"hr"`` (HR-stem), ``"conv"`` (Conv-stem) or ``"vit"`` (ViT-stem).
        downsample: ``"irds"`` (IRDS-a then IRDS-b) or ``"plain"`` (strided 3x3).
        head_dim: width of one attention head where ``num_heads`` is ``None``.
        irds_a_stages: how many of the first downsamplings use IRDS-a (the rest
            use IRDS-b).
    """

    widths: tuple
    depths: tuple
    mlp_ratios: tuple
    num_heads: tuple
    block_types: tuple = ("hr", "hr", "cffn", "transformer", "transformer")
    stem: str = "hr"
    downsample: str = "irds"
    head_dim: int = 64
    irds_a_stages: int = 2

    def __post_init__(self):
        n = len(self.widths)
        for field in ("depths", "mlp_ratios", "num_heads", "block_types"):
            if len(getattr(self, field)) != n:
                raise ValueError(
                    f"HiriViTConfig.{field} must have one entry per stage ({n}). "
                    f"Received: {field}={getattr(self, field)}"
                )
        if n < 2:
            raise ValueError(f"A HIRI-ViT needs at least 2 stages. Received {n}.")
        bad = [b for b in self.block_types if b not in STAGE_BLOCK_TYPES]
        if bad:
            raise ValueError(
                f"Unknown block type(s) {bad}. Allowed: {list(STAGE_BLOCK_TYPES)}."
            )
        if self.stem not in STEM_TYPES:
            raise ValueError(f"Unknown stem {self.stem!r}. Allowed: {list(STEM_TYPES)}.")
        if self.downsample not in DOWNSAMPLE_TYPES:
            raise ValueError(
                f"Unknown downsample {self.downsample!r}. Allowed: {list(DOWNSAMPLE_TYPES)}."
            )
        for i in range(n):
            checks.int_at_least(f"HiriViTConfig.widths[{i}]", self.widths[i])
            checks.int_at_least(f"HiriViTConfig.depths[{i}]", self.depths[i])
            checks.number_in(f"HiriViTConfig.mlp_ratios[{i}]", self.mlp_ratios[i], low_open=True)
            if self.block_types[i] == "transformer":
                checks.heads(self.widths[i], self.heads(i), owner=f"HiriViTConfig stage {i + 1}")
        checks.int_at_least("HiriViTConfig.head_dim", self.head_dim)
        checks.int_at_least("HiriViTConfig.irds_a_stages", self.irds_a_stages, 0)

    @property
    def num_stages(self):
        """How many stages the network has (five for the paper's variants)."""
        return len(self.widths)

    def heads(self, stage):
        """Heads of ``stage`` (0-based), derived from ``head_dim`` if unset."""
        heads = self.num_heads[stage]
        return heads if heads is not None else max(1, self.widths[stage] // self.head_dim)

    def replace(self, **changes):
        """A copy with ``changes`` (field=value) applied and checked again,
        e.g. ``VARIANTS["S"].replace(depths=(1, 1, 2, 2, 1))``."""
        return dataclasses.replace(self, **changes)

    def stage_specs(self, input_size=(None, None), pin_late_grids=False):
        """One :class:`StageSpec` per stage for an input of ``input_size``
        ``(height, width)``: the only place where the stage rules live (which
        downsampling, which norm, the stride rule and the pinned grids)."""
        grid = tuple(halve(halve(side)) for side in input_size)  # the stem: stride 4
        specs = []
        for i in range(self.num_stages):
            kind, strides, resize_to = None, 2, None
            if i > 0:
                if self.downsample == "plain":
                    kind = "plain"
                else:
                    kind = "irds_a" if i <= self.irds_a_stages else "irds_b"
                target = None
                if pin_late_grids and 4 * 2**i == PINNED_STRIDE:
                    target = tuple(
                        max(math.ceil(side / PINNED_STRIDE), PINNED_MIN_GRID) for side in input_size
                    )
                    if all(g <= t for g, t in zip(grid, target)):
                        strides = 1
                if strides == 2:
                    grid = tuple(halve(g) for g in grid)
                if target is not None and grid != target:
                    resize_to = grid = target
            block = self.block_types[i]
            specs.append(StageSpec(
                stage=i + 1, width=self.widths[i], depth=self.depths[i], block=block,
                norm=BLOCK_NORMS[block], mlp_ratio=self.mlp_ratios[i],
                heads=self.heads(i) if block == "transformer" else None,
                downsample=kind, strides=strides, resize_to=resize_to, grid=grid,
            ))
        return specs

    def to_dict(self):
        """The fields as a plain dict (JSON-ready; ``HiriViTConfig(**d)`` rebuilds it)."""
        return dataclasses.asdict(self)


# Table I. Heads: stages 4-5 as printed (head dim 64); stages 1-3 have none.
VARIANTS = {
    "S": HiriViTConfig(
        widths=(32, 64, 128, 320, 512),
        depths=(2, 2, 2, 9, 4),
        mlp_ratios=(4, 4, 6, 5, 5),
        num_heads=(None, None, None, 5, 8),
    ),
    "B": HiriViTConfig(
        widths=(64, 96, 192, 320, 640),
        depths=(2, 2, 3, 17, 4),
        mlp_ratios=(4, 4, 5, 4, 5),
        num_heads=(None, None, None, 5, 10),
    ),
    "L": HiriViTConfig(
        widths=(80, 160, 224, 448, 640),
        depths=(4, 4, 5, 25, 5),
        mlp_ratios=(4, 4, 5, 3, 5),
        num_heads=(None, None, None, 7, 10),
    ),
}

# Not from the paper: a small network that trains in minutes on a CPU, for the
# demos, tests, benchmarks and the project's own photo-patch checkpoint.
EXTRA_VARIANTS = {
    "TINY": HiriViTConfig(
        widths=(16, 32, 48, 64, 96),
        depths=(1, 1, 1, 2, 1),
        mlp_ratios=(2, 2, 2, 2, 2),
        num_heads=(None, None, None, 2, 3),
        head_dim=32,
    ),
}

# What the paper reports (Table II; 768 from Table III): params in millions and
# "GFLOPs" (which are multiply-accumulates, see DESIGN.md) per input size.
PAPER = {
    "S": {"params_m": 34.8, "gmacs": {224: 4.5, 384: 4.7, 448: 5.0, 768: 16.1}},
    "B": {"params_m": 54.4, "gmacs": {224: 8.2, 384: 9.3, 448: 9.9, 768: 31.6}},
    "L": {"params_m": 94.4, "gmacs": {224: 17.0, 384: 18.2, 448: 19.9, 768: 63.4}},
}

# Table VIII rows (HIRI-ViT-S with other block types per stage), for profiling.
TABLE_VIII = {
    "HR-HR-HR-HR-T": ("hr", "hr", "hr", "hr", "transformer"),
    "HR-HR-HR-T-T": ("hr", "hr", "hr", "transformer", "transformer"),
    "HR-HR-T-T-T": ("hr", "hr", "transformer", "transformer", "transformer"),
    "HR-HR-CFFN-T-T": ("hr", "hr", "cffn", "transformer", "transformer"),
}
TABLE_VIII_PAPER = {
    "HR-HR-HR-HR-T": (33.2, 4.3),
    "HR-HR-HR-T-T": (34.7, 4.8),
    "HR-HR-T-T-T": (34.8, 5.3),
    "HR-HR-CFFN-T-T": (34.8, 5.0),
}


def get_config(variant):
    """Returns the :class:`HiriViTConfig` for a name (``"S"``, ``"hiri_vit_b"``,
    ...) or passes a config through. Raises ``ValueError`` for anything else."""
    if isinstance(variant, HiriViTConfig):
        return variant
    if isinstance(variant, str):
        key = variant.strip().upper()
        for prefix in ("HIRI_VIT_", "HIRI-VIT-", "HIRIVIT"):
            if key.startswith(prefix):
                key = key[len(prefix):]
        if key in VARIANTS:
            return VARIANTS[key]
        if key in EXTRA_VARIANTS:
            return EXTRA_VARIANTS[key]
    raise ValueError(
        f"Unknown HIRI-ViT variant {variant!r}. Allowed: {sorted(VARIANTS)} "
        "(or 'hiri_vit_s' etc.), 'tiny' (a small CPU network, not from the paper), "
        "or a keras_hiri.HiriViTConfig."
    )


def variant_name(variant):
    """The canonical letter of a named variant, ``None`` for a custom config."""
    config = get_config(variant)
    for name, known in {**VARIANTS, **EXTRA_VARIANTS}.items():
        if known == config:
            return name
    return None
