"""Assembles a four-stage pyramid backbone, plain or HIRI-upgraded, from a
network description, and the model class it returns.

A network description (:class:`~keras_hiri.backbones.pvt_v2.PVTv2Network`,
:class:`~keras_hiri.backbones.davit.DaViTNetwork`) gives ``widths``,
``stage_blocks(stage)``, ``stem``, ``downsample``, ``block``, ``stage_norm`` and
``head_norm`` (the last two may return ``None``); :func:`assemble` stacks them
under :mod:`keras_hiri.naming`'s layer names, with the front of
:func:`keras_hiri.backbones.upgrade.hiri_front` in place of the stem when
upgraded.
"""

import keras
import numpy as np

from keras_hiri import checks
from keras_hiri import naming
from keras_hiri.backbones.upgrade import HiriUpgrade, hiri_front
from keras_hiri.builder import imagenet_normalization
from keras_hiri.layers import register
from keras_hiri.layers.conv import dense
from keras_hiri.model import DescribedModel


@register
class PyramidModel(DescribedModel):
    """A functional backbone with a feature pyramid: :attr:`pyramid_outputs`
    ``{"P1": ..., "P4": ...}`` are the outputs of the four stages (MiT's names,
    which keras-hub's ``SegFormerBackbone`` reads: ``Pi`` is stage ``i``, at
    stride ``2 ** (i + 1)`` of the plain network's input) and, in an upgraded
    network, ``"P0"`` the added high-resolution stage. :attr:`hidden_dims` are
    their widths, in the same order. :attr:`architecture` is
    ``{"network", "variant", "hiri", "include_top", "classes"}``. Built by
    :func:`keras_hiri.backbones.PVTv2`, ``DaViT`` and ``HRNet``; revived as this
    class by ``keras.saving``.
    """

    def __init__(self, *args, levels=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.levels = dict(levels or {})

    @property
    def pyramid_outputs(self):
        return {key: self.get_layer(name).output for key, name in sorted(self.levels.items())}

    @property
    def hidden_dims(self):
        return [int(level.shape[-1]) for level in self.pyramid_outputs.values()]

    def get_config(self):
        config = super().get_config()
        config.update(levels=self.levels)
        return config

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        levels = config.pop("levels", {})
        model = super().from_config(config, custom_objects=custom_objects)
        model.levels = dict(levels)
        return model


def upgrade_of(hiri):
    """``hiri`` as a :class:`HiriUpgrade` or ``None``: ``False``/``None`` (plain),
    ``True`` (the default front) or a :class:`HiriUpgrade`."""
    if hiri is None or hiri is False:
        return None
    if hiri is True:
        return HiriUpgrade()
    if isinstance(hiri, HiriUpgrade):
        return hiri
    raise ValueError(f"hiri must be True, False, None or a HiriUpgrade. Received: hiri={hiri!r}")


def resolve_variant(variant, variants):
    """``(numbers, label)`` of ``variant``: a name of ``variants`` or a dict of numbers."""
    if isinstance(variant, str):
        if variant not in variants:
            raise ValueError(f"variant must be one of {sorted(variants)} or a dict of numbers. "
                             f"Received: variant={variant!r}")
        return dict(variants[variant]), variant
    if isinstance(variant, dict):
        return dict(variant), "custom"
    raise ValueError(f"variant must be a name or a dict. Received: variant={variant!r}")


def describe(network_name, numbers, label, upgrade, include_top, classes, name):
    """``(architecture, name)``: what a builder records in the model, and the
    model's name (default: the variant's, ``_hiri`` when upgraded)."""
    architecture = {"network": network_name, "variant": numbers, "hiri": None if upgrade is None else
                    {"filters": upgrade.filters, "depth": upgrade.depth, "mlp_ratio": upgrade.mlp_ratio},
                    "include_top": include_top, "classes": classes if include_top else None}
    return architecture, name or f"{network_name}_{label}" + ("_hiri" if upgrade is not None else "")


def check_arguments(*, input_shape, include_top, include_preprocessing, pooling, classes, least=32, multiple=1):
    """The builders' shared checks; ``input_shape``'s known sides must be ints
    ``>= least`` and multiples of ``multiple``. Returns it as a tuple."""
    for flag_name, value in (("include_top", include_top), ("include_preprocessing", include_preprocessing)):
        checks.flag(flag_name, value)
    if pooling not in checks.POOLINGS:
        raise ValueError(f"pooling must be one of {checks.POOLINGS}. Received: pooling={pooling!r}")
    if include_top:
        checks.int_at_least("classes", classes)
    input_shape = tuple(input_shape)
    if len(input_shape) != 3 or input_shape[-1] != 3 or any(
            s is not None and (not isinstance(s, int) or s < least or s % multiple) for s in input_shape[:2]):
        rule = f"sides >= {least}" + (f" that are multiples of {multiple}" if multiple > 1 else "")
        raise ValueError(f"input_shape must be (height, width, 3) with {rule} (or None). "
                         f"Received: input_shape={input_shape!r}")
    return input_shape


def assemble(network, *, upgrade, input_shape, include_top, classes, pooling, classifier_activation,
             include_preprocessing, drop_path_rate, name, architecture, dtype=None):
    """The functional :class:`PyramidModel` of ``network`` (see the module docstring)."""
    input_shape = check_arguments(input_shape=input_shape, include_top=include_top, pooling=pooling,
                                  include_preprocessing=include_preprocessing, classes=classes)
    checks.number_in("drop_path_rate", drop_path_rate, 0, 1, high_open=True)
    stages = range(1, len(network.widths) + 1)
    blocks = [network.stage_blocks(stage) for stage in stages]
    front = upgrade.depth if upgrade is not None else 0
    rates = iter(np.linspace(0.0, drop_path_rate, front + sum(blocks)).tolist())
    inputs = keras.Input(input_shape, name="images")
    x = imagenet_normalization(naming.PREPROCESSING, dtype)(inputs) if include_preprocessing else inputs
    levels = {}
    if upgrade is not None:
        _, x = hiri_front(x, network.widths[0], upgrade, [next(rates) for _ in range(front)], dtype)
        levels["P0"] = naming.stage_norm(0)
    else:
        x = network.stem(naming.STEM, dtype)(x)
    for stage, count in zip(stages, blocks):
        layers = [network.downsample(stage, naming.downsample(stage), dtype)] if stage > 1 else []
        layers += [network.block(stage, j, next(rates), naming.block(stage, j + 1), dtype) for j in range(count)]
        norm = network.stage_norm(stage, naming.stage_norm(stage), dtype)
        layers += [norm] if norm is not None else []
        for layer in layers:
            x = layer(x)
        levels[f"P{stage}"] = layers[-1].name
    if pooling == "avg" or include_top:
        x = keras.layers.GlobalAveragePooling2D(name=naming.POOLING["avg"], dtype=dtype)(x)
    elif pooling == "max":
        x = keras.layers.GlobalMaxPooling2D(name=naming.POOLING["max"], dtype=dtype)(x)
    if include_top:
        norm = network.head_norm(naming.HEAD_NORM, dtype)
        if norm is not None:
            x = norm(x)
        x = dense(classes, name=naming.CLASSIFIER, dtype="float32")(x)
        if classifier_activation is not None:
            x = keras.layers.Activation(classifier_activation, dtype="float32",
                                        name=naming.CLASSIFIER_ACTIVATION)(x)
    return PyramidModel(inputs, x, levels=levels, architecture=architecture, name=name)

