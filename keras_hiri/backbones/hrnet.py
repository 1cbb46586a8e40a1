"""HRNet (Wang et al., "Deep High-Resolution Representation Learning", 2020) for
classification, the plain network of Table IX's HRNet-W18 rows, written after
timm's ``hrnet_w18`` (the reference the issue names; no weights are read).

A stem (two ``Conv3x3/2`` + BN + ReLU, width 64) to the 1/4 grid, a stage of
bottlenecks, then stages of parallel branches at 1/4, 1/8, 1/16, 1/32 (widths
``C, 2C, 4C, 8C``), each module running basic blocks per branch and fusing
every branch into every other (``1x1`` conv + BN + nearest upsampling from a
coarser branch, ``3x3/2`` conv chains from a finer one; summed, ReLU). The
classification head widens each branch with a bottleneck (to 128, 256, 512,
1024), merges them from fine to coarse with ``Conv3x3/2`` + BN + ReLU, then
``Conv1x1`` to 2048 + BN + ReLU, average pooling and the classifier.

HRNet's stages do not fit :func:`~keras_hiri.backbones.pyramid.assemble`'s
one-tensor stages, so :func:`HRNet` assembles its own graph, with the same
HIRI front in place of the stem when upgraded.
"""

import keras

from keras_hiri import checks, naming
from keras_hiri.backbones.pyramid import PyramidModel, check_arguments, describe, resolve_variant, upgrade_of
from keras_hiri.backbones.upgrade import hiri_front
from keras_hiri.builder import imagenet_normalization
from keras_hiri.layers import register
from keras_hiri.layers.composite import CompositeLayer
from keras_hiri.layers.conv import conv2d, dense
from keras_hiri.layers.norm import batch_norm

HRNET_VARIANTS = {
    "w18": dict(width=18, modules=(1, 4, 3)),
    "w32": dict(width=32, modules=(1, 4, 3)),
}
HEAD_WIDTHS = (32, 64, 128, 256)  # x 4 (bottleneck expansion) = 128 .. 1024
STEM_WIDTH = 64


def _relu(x):
    return keras.ops.relu(x)


@register
class BasicBlock(CompositeLayer):
    """``ReLU(x + BN(Conv3x3(ReLU(BN(Conv3x3(x))))))``, ``filters`` wide (the input's width)."""

    def __init__(self, filters, **kwargs):
        super().__init__(**kwargs)
        checks.int_at_least("filters", filters, owner="BasicBlock")
        self.filters = filters

    def build(self, input_shape):
        self.conv1, self.bn1 = self.conv_bn("conv1", "bn1", self.filters, 3)
        self.conv2, self.bn2 = self.conv_bn("conv2", "bn2", self.filters, 3)
        self.build_chain(input_shape, self.conv1, self.bn1, self.conv2, self.bn2)

    def bn_folds(self):
        return [(("conv1",), "bn1"), (("conv2",), "bn2")]

    def call(self, x, training=None):
        y = _relu(self.bn1(self.conv1(x), training=training))
        return _relu(x + self.bn2(self.conv2(y), training=training))

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(filters=self.filters)
        return config


@register
class Bottleneck(CompositeLayer):
    """``Conv1x1 -> Conv3x3/s -> Conv1x1 (4 x filters)``, each with BN (ReLU but
    the last), plus the input (through ``Conv1x1/s`` + BN where the shape
    changes), then ReLU."""

    def __init__(self, filters, strides=1, **kwargs):
        super().__init__(**kwargs)
        checks.int_at_least("filters", filters, owner="Bottleneck")
        self.filters, self.strides = filters, strides

    def build(self, input_shape):
        out = 4 * self.filters
        self.conv1, self.bn1 = self.conv_bn("conv1", "bn1", self.filters, 1)
        self.conv2, self.bn2 = self.conv_bn("conv2", "bn2", self.filters, 3, self.strides)
        self.conv3, self.bn3 = self.conv_bn("conv3", "bn3", out, 1)
        self.shortcut = self.strides != 1 or input_shape[-1] != out
        self.build_chain(input_shape, self.conv1, self.bn1, self.conv2, self.bn2, self.conv3, self.bn3)
        if self.shortcut:
            self.short_conv, self.short_bn = self.conv_bn("short_conv", "short_bn", out, 1, self.strides)
            self.build_chain(input_shape, self.short_conv, self.short_bn)

    def bn_folds(self):
        folds = [(("conv1",), "bn1"), (("conv2",), "bn2"), (("conv3",), "bn3")]
        return folds + ([(("short_conv",), "short_bn")] if getattr(self, "shortcut", False) else [])

    def call(self, x, training=None):
        y = _relu(self.bn1(self.conv1(x), training=training))
        y = _relu(self.bn2(self.conv2(y), training=training))
        y = self.bn3(self.conv3(y), training=training)
        s = self.short_bn(self.short_conv(x), training=training) if self.shortcut else x
        return _relu(y + s)

    def compute_output_shape(self, input_shape):
        b, h, w, _ = input_shape
        if self.strides != 1:
            h, w = (None if n is None else (n + 1) // 2 for n in (h, w))
        return (b, h, w, 4 * self.filters)

    def get_config(self):
        config = super().get_config()
        config.update(filters=self.filters, strides=self.strides)
        return config


def _conv_bn_relu(x, filters, kernel, strides, name, dtype, relu=True, use_bias=False):
    x = conv2d(filters, kernel, strides, use_bias=use_bias, name=f"{name}_conv", dtype=dtype)(x)
    x = batch_norm(f"{name}_bn", dtype=dtype)(x)
    return keras.layers.ReLU(name=f"{name}_relu", dtype=dtype)(x) if relu else x


def _fuse(branches, widths, name, dtype):
    """Every branch into every other: the exchange unit that ends a module."""
    fused = []
    for i in range(len(branches)):
        terms = []
        for j, x in enumerate(branches):
            if j > i:  # coarser: 1x1 conv + BN, nearest upsampling
                x = _conv_bn_relu(x, widths[i], 1, 1, f"{name}_fuse{i}_{j}", dtype, relu=False)
                x = keras.layers.UpSampling2D(2 ** (j - i), name=f"{name}_fuse{i}_{j}_up", dtype=dtype)(x)
            elif j < i:  # finer: 3x3/2 convs, the last to the target width without ReLU
                for k in range(i - j):
                    last = k == i - j - 1
                    x = _conv_bn_relu(x, widths[i] if last else widths[j], 3, 2, f"{name}_fuse{i}_{j}_{k}", dtype,
                                      relu=not last)
            terms.append(x)
        x = keras.layers.Add(name=f"{name}_fuse{i}_add", dtype=dtype)(terms)
        fused.append(keras.layers.ReLU(name=f"{name}_fuse{i}", dtype=dtype)(x))
    return fused


def _stages(x, width, modules, dtype):
    """The bottleneck stage and the multi-branch stages 2-4; returns the branches."""
    for k in range(4):
        x = Bottleneck(STEM_WIDTH, name=f"stage1_block{k + 1}", dtype=dtype)(x)
    branches = [x]
    for stage, count in zip((2, 3, 4), modules):
        widths = [width * 2 ** b for b in range(stage)]
        new = []
        for b, w in enumerate(widths):  # transition: adapt widths, open the new coarser branch
            if b < len(branches):
                y = branches[b]
                if y.shape[-1] != w:
                    y = _conv_bn_relu(y, w, 3, 1, f"stage{stage}_transition{b}", dtype)
            else:
                y = _conv_bn_relu(branches[-1], w, 3, 2, f"stage{stage}_transition{b}", dtype)
            new.append(y)
        branches = new
        for m in range(count):
            name = f"stage{stage}_module{m + 1}"
            for b, w in enumerate(widths):
                for k in range(4):
                    branches[b] = BasicBlock(w, name=f"{name}_branch{b}_block{k + 1}", dtype=dtype)(branches[b])
            branches = _fuse(branches, widths, name, dtype)
    return branches


def _head(branches, dtype):
    """HRNet's classification head: widen, merge fine to coarse, 1x1 to 2048."""
    y = None
    for i, x in enumerate(branches):
        x = Bottleneck(HEAD_WIDTHS[i], name=f"head_widen{i}", dtype=dtype)(x)
        if y is not None:
            y = _conv_bn_relu(y, 4 * HEAD_WIDTHS[i], 3, 2, f"head_merge{i}", dtype, use_bias=True)
            x = keras.layers.Add(name=f"head_merge{i}_add", dtype=dtype)([x, y])
        y = x
    return _conv_bn_relu(y, 2048, 1, 1, "head_final", dtype, use_bias=True)


def HRNet(variant="w18", hiri=None, input_shape=None, include_top=True, classes=1000, pooling=None,
          classifier_activation="softmax", include_preprocessing=True, name=None, dtype=None):
    """HRNet for classification (:mod:`keras_hiri.backbones.hrnet`), plain or HIRI-upgraded.

    Args:
        variant: ``"w18"``, ``"w32"`` or a dict ``{"width": C, "modules": (m2, m3, m4)}``.
        hiri, input_shape, include_top, classes, classifier_activation,
        include_preprocessing, name, dtype: as :func:`keras_hiri.backbones.PVTv2`.
        pooling: without the top, ``None`` (the model outputs the last stage's
            four branches, a list, as timm's features) or ``"avg"`` / ``"max"``
            of the classification head's 2048 features (timm's pre-logits).

    Returns:
        A :class:`PyramidModel`: ``P1``..``P4`` the four branches of the last
        stage (strides 4 to 32 of the plain input), ``P0`` the front's stage when
        upgraded. With the top, HRNet's classification head. No drop-path
        (HRNet has none).
    """
    numbers, label = resolve_variant(variant, HRNET_VARIANTS)
    if set(numbers) != {"width", "modules"}:
        raise ValueError(f"variant {numbers!r} does not describe an hrnet network: it needs 'width' and 'modules'")
    checks.int_at_least("width", numbers["width"], owner="HRNet")
    upgrade = upgrade_of(hiri)
    multiple = 64 if upgrade is not None else 32  # the fusions add branches that must tile exactly
    input_shape = check_arguments(
        input_shape=input_shape or ((448, 448, 3) if upgrade is not None else (224, 224, 3)),
        include_top=include_top, include_preprocessing=include_preprocessing, pooling=pooling, classes=classes,
        least=multiple, multiple=multiple)
    inputs = keras.Input(input_shape, name="images")
    x = imagenet_normalization(naming.PREPROCESSING, dtype)(inputs) if include_preprocessing else inputs
    levels = {}
    if upgrade is not None:
        _, x = hiri_front(x, STEM_WIDTH, upgrade, dtype=dtype)
        levels["P0"] = naming.stage_norm(0)
    else:
        x = _conv_bn_relu(x, STEM_WIDTH, 3, 2, "stem1", dtype)
        x = _conv_bn_relu(x, STEM_WIDTH, 3, 2, "stem2", dtype)
    branches = _stages(x, numbers["width"], tuple(numbers["modules"]), dtype)
    last = f"stage4_module{numbers['modules'][-1]}"
    levels.update({f"P{b + 1}": f"{last}_fuse{b}" for b in range(4)})
    if include_top or pooling is not None:
        pool = keras.layers.GlobalMaxPooling2D if pooling == "max" else keras.layers.GlobalAveragePooling2D
        x = pool(name=naming.POOLING[pooling or "avg"], dtype=dtype)(_head(branches, dtype))
        if include_top:
            x = dense(classes, name=naming.CLASSIFIER, dtype="float32")(x)
            if classifier_activation is not None:
                x = keras.layers.Activation(classifier_activation, dtype="float32",
                                            name=naming.CLASSIFIER_ACTIVATION)(x)
    else:
        x = branches  # the four branches (a list), so every one stays in the graph
    architecture, name = describe("hrnet", numbers, label, upgrade, include_top, classes, name)
    return PyramidModel(inputs, x, levels=levels, architecture=architecture, name=name)
