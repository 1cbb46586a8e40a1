"""Functional builder: ``HiriViT`` and the ``HiriViTS/B/L`` shortcuts.

Follows ``keras.applications``: the same arguments, validation before any layer
exists, preprocessing inside the model, deterministic layer names.
"""

import json

import keras
import numpy as np

from keras_hiri import checks, naming
from keras_hiri.layers import register
from keras_hiri.layers.conv import dense
from keras_hiri.layers.drop_path import DropPath
from keras_hiri.layers.norm import layer_norm, make_norm
from keras_hiri import variants as variants_lib
from keras_hiri import weights as weights_lib
from keras_hiri.blocks import BLOCKS
from keras_hiri.downsampling import DOWNSAMPLERS
from keras_hiri.head import ClassAttentionHead
from keras_hiri.stem import STEMS

# Total stride of the five-stage network and the smallest side it accepts.
TOTAL_STRIDE = 64
MIN_SIZE = 64
DEFAULT_SIZE = 448
DATA_FORMATS = ("channels_last", "channels_first")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
POOLINGS = (None, "avg", "max")


def imagenet_normalization(name=None, dtype=None):
    """The in-model preprocessing: ``[0, 255]`` RGB to ImageNet-standardised
    (the mean and standard deviation the paper's training used)."""
    return keras.layers.Normalization(
        mean=[255.0 * m for m in IMAGENET_MEAN],
        variance=[(255.0 * s) ** 2 for s in IMAGENET_STD],
        name=name, dtype=dtype,
    )


@register
class GridResize(keras.layers.Layer):
    """Bilinear resize of a ``(B, H, W, C)`` map to a fixed grid.

    Used only by ``pin_late_grids=True`` when no integer stride reaches the
    pinned stage-3 grid (e.g. 384 input: 48 -> 24, resized to 28).
    """

    def __init__(self, size, **kwargs):
        super().__init__(**kwargs)
        self.size = tuple(int(s) for s in size)

    def call(self, x):
        return keras.ops.image.resize(x, self.size, interpolation="bilinear",
                                      data_format="channels_last")

    def compute_output_shape(self, input_shape):
        return (input_shape[0], *self.size, input_shape[-1])

    def get_config(self):
        config = super().get_config()
        config.update(size=self.size)
        return config


@register
class HiriViTModel(keras.Model):
    """A functional HIRI-ViT. Adds :attr:`pyramid_outputs` and :attr:`feature_info`.

    Built by :func:`HiriViT`; revived as this class by ``keras.saving``.
    """

    def __init__(self, *args, architecture=None, **kwargs):
        super().__init__(*args, **kwargs)
        # JSON text: what the builder built (variant, config, top, classes, layout).
        # Saved with the model's config and into every ``.weights.h5`` file
        # this model writes, so a checkpoint describes itself.
        self.architecture_json = None if architecture is None else json.dumps(architecture)

    @property
    def architecture(self):
        """``{"variant", "config", "include_top", "classes", "data_format"}`` of
        the builder's arguments (``None`` for a model not built by :func:`HiriViT`)."""
        return None if self.architecture_json is None else json.loads(self.architecture_json)

    def get_config(self):
        config = super().get_config()
        if self.architecture_json is not None:
            config["architecture"] = self.architecture
        return config

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        architecture = config.pop("architecture", None)
        model = super().from_config(config, custom_objects=custom_objects)
        model.architecture_json = None if architecture is None else json.dumps(architecture)
        return model

    def save_weights(self, filepath, overwrite=True, **kwargs):
        """``keras.Model.save_weights``, plus the model's :attr:`architecture`
        as metadata in a ``.weights.h5`` file (read back by ``HiriViT(weights=path)``)."""
        super().save_weights(filepath, overwrite=overwrite, **kwargs)
        if self.architecture is not None:
            weights_lib.write_metadata(filepath, self.architecture)

    def stage_norms(self):
        """``[(stage, layer)]``: the norm ending each stage (its output is a
        pyramid level), stages counted from 1."""
        found = []
        for layer in self.layers:
            kind, stage, _ = naming.parse(layer.name)
            if kind == "norm":
                found.append((stage, layer))
        return found

    @property
    def classifier(self):
        """The classifier ``Dense`` (``None`` without the top)."""
        return self._layer_or_none(naming.CLASSIFIER)

    @property
    def head_norm(self):
        """The classifier's LayerNorm (``None`` without the top)."""
        return self._layer_or_none(naming.HEAD_NORM)

    def _layer_or_none(self, name):
        return next((layer for layer in self.layers if layer.name == name), None)

    @property
    def drop_paths(self):
        """The :class:`~keras_hiri.DropPath` layers of the blocks, in order."""
        return [
            layer.drop_path for layer in self.layers
            if isinstance(getattr(layer, "drop_path", None), DropPath)
        ]

    @property
    def data_format(self):
        """``"channels_first"`` when the model takes NCHW input, else ``"channels_last"``."""
        if self._layer_or_none(naming.TO_CHANNELS_LAST) is not None:
            return "channels_first"
        return "channels_last"

    @property
    def pyramid_outputs(self):
        """``{"P2": ..., "P6": ...}``: symbolic stage outputs, ``Pn`` at stride
        ``2**n`` (the keras-hub convention), in the model's :attr:`data_format`.
        Use ``keras.Model(model.inputs, model.pyramid_outputs)`` as a feature
        extractor. With ``pin_late_grids`` the late strides are not ``2**n``
        (see :attr:`feature_info` for the real ones)."""
        levels = {f"P{stage + 1}": layer.output for stage, layer in self.stage_norms()}
        if self.data_format == "channels_first":
            levels = {
                key: keras.layers.Permute((3, 1, 2), name=f"{key}_channels_first")(level)
                for key, level in levels.items()
            }
        return levels

    @property
    def feature_info(self):
        """One dict per stage: ``name``, ``key``, ``channels``, ``reduction``
        (the level's real stride where the input size is static, so pinned
        grids report 4, 8, 8, 16, 32 at 224)."""
        size = _to_hwc(self.inputs[0].shape[1:], self.data_format)[:2]
        info = []
        for stage, layer in self.stage_norms():
            grid = tuple(layer.output.shape[1:3])
            info.append({
                "name": layer.name, "key": f"P{stage + 1}",
                "channels": layer.output.shape[-1], "reduction": _reduction(size, grid, stage),
            })
        return info


def is_channels_first(model):
    """Whether ``model`` takes NCHW images (a :class:`HiriViTModel` or keras-hub
    backbone built with ``data_format="channels_first"``; any other model: no)."""
    return getattr(model, "data_format", "channels_last") == "channels_first"


def _reduction(size, grid, stage):
    """The stride ``s`` of a level: ``grid == ceil(size / s)`` (the stride rule),
    ``2**(stage + 1)`` unless pinned grids changed it; a resized level that no
    power of two explains reports ``size / grid``."""
    nominal = 2 ** (stage + 1)
    if None in size or None in grid:
        return nominal
    for s in (nominal, *(2**k for k in range(1, 8))):
        if all(-(-n // s) == g for n, g in zip(size, grid)):
            return s
    return size[0] / grid[0]


def _validate_input_shape(input_shape, channels_required, pin_late_grids, data_format):
    if len(input_shape) != 3:
        order = "(height, width, channels)" if data_format == "channels_last" else "(channels, height, width)"
        raise ValueError(
            f"input_shape must be {order} for data_format={data_format!r}. "
            f"Received: input_shape={input_shape}"
        )
    h, w, c = _to_hwc(input_shape, data_format)
    if channels_required is not None and c != channels_required:
        raise ValueError(
            f"input_shape must have {channels_required} channels (RGB) when "
            "include_preprocessing=True or weights are loaded. "
            f"Received: input_shape={input_shape}"
        )
    if c is None or c < 1:
        raise ValueError(f"input_shape needs a positive channel count. Received: {input_shape}")
    for side in (h, w):
        if side is not None and (not isinstance(side, (int, np.integer)) or side < MIN_SIZE):
            raise ValueError(
                f"Input is too small for the five stages: each side must be an int "
                f">= {MIN_SIZE} (total stride {TOTAL_STRIDE}) or None. "
                f"Received: input_shape={input_shape}"
            )
    if pin_late_grids and (h is None or w is None):
        raise ValueError(
            "pin_late_grids=True needs a static input size (the late grids are "
            f"computed from it). Received: input_shape={input_shape}"
        )


def _validate_arguments(
    *, include_top, weights, input_tensor, input_shape, pooling, classes,
    classifier_activation, include_preprocessing, drop_path_rate, pin_late_grids, data_format,
    reset_head=False,
):
    """Checks every argument (reads no file); returns the full input shape and
    the data format."""
    flags = dict(include_top=include_top, include_preprocessing=include_preprocessing,
                 pin_late_grids=pin_late_grids, reset_head=reset_head)
    for name, value in flags.items():
        checks.flag(name, value)
    if data_format is None:
        data_format = keras.config.image_data_format()
    if data_format not in DATA_FORMATS:
        raise ValueError(
            f"data_format must be one of {DATA_FORMATS} (or None for "
            f"keras.config.image_data_format()). Received: data_format={data_format!r}"
        )
    if pooling not in POOLINGS:
        raise ValueError(f"pooling must be one of {POOLINGS}. Received: pooling={pooling!r}")
    if include_top:
        checks.int_at_least("classes", classes)
    if classifier_activation is not None:
        try:
            keras.activations.get(classifier_activation)
        except (ValueError, TypeError) as e:
            raise ValueError(
                "classifier_activation must be None, a Keras activation name such as "
                f"'softmax', or a callable. Received: {classifier_activation!r}"
            ) from e
    checks.number_in("drop_path_rate", drop_path_rate, 0, 1, high_open=True)
    if input_tensor is not None and not keras.backend.is_keras_tensor(input_tensor):
        raise ValueError(
            "input_tensor must be a Keras tensor (from keras.Input or a layer). "
            f"Received: {type(input_tensor).__name__}"
        )
    if input_shape is None and input_tensor is not None:
        input_shape = tuple(input_tensor.shape[1:])
    if input_shape is None:
        side = DEFAULT_SIZE if include_top else None
        input_shape = (side, side, 3) if data_format == "channels_last" else (3, side, side)
    input_shape = tuple(input_shape)
    # As keras.applications: a backbone (no top, no weights) takes any channel
    # count and then skips the RGB normalisation.
    needs_rgb = 3 if weights is not None or (include_preprocessing and include_top) else None
    _validate_input_shape(input_shape, needs_rgb, pin_late_grids, data_format)
    return input_shape, data_format


def _to_hwc(shape, data_format):
    """``(height, width, channels)`` of an input shape given in ``data_format``."""
    return tuple(shape) if data_format == "channels_last" else (*shape[1:], shape[0])


def _variant_config(variant, block_types, stem, downsample):
    """The variant's :class:`HiriViTConfig` with the ablation overrides applied."""
    config = variants_lib.get_config(variant)
    overrides = {
        k: v
        for k, v in (("block_types", block_types), ("stem", stem), ("downsample", downsample))
        if v is not None
    }
    if overrides:
        config = config.replace(
            **{k: tuple(v) if k == "block_types" else v for k, v in overrides.items()}
        )
    return config


def HiriViT(
    variant="S",
    input_shape=None,
    include_top=True,
    weights=None,
    input_tensor=None,
    pooling=None,
    classes=1000,
    classifier_activation="softmax",
    name=None,
    *,
    include_preprocessing=True,
    drop_path_rate=0.0,
    pin_late_grids=False,
    block_types=None,
    stem=None,
    downsample=None,
    reset_head=False,
    data_format=None,
    dtype=None,
):
    config = _variant_config(variant, block_types, stem, downsample)
    input_shape, data_format = _validate_arguments(
        include_top=include_top, weights=weights, input_tensor=input_tensor,
        input_shape=input_shape, pooling=pooling, classes=classes,
        classifier_activation=classifier_activation,
        include_preprocessing=include_preprocessing, drop_path_rate=drop_path_rate,
        pin_late_grids=pin_late_grids, data_format=data_format, reset_head=reset_head,
    )
    hwc = _to_hwc(input_shape, data_format)
    # The checkpoint is found, read and matched against the arguments before
    # any layer exists (nothing half-built or half-loaded on a bad file).
    checkpoint = weights_lib.resolve_checkpoint(
        weights, config, include_top=include_top, classes=classes, reset_head=reset_head
    )
    if name is None:
        letter = variants_lib.variant_name(config)
        name = f"hiri_vit_{letter.lower()}" if letter else "hiri_vit_custom"

    if input_tensor is None:
        inputs = keras.Input(shape=input_shape, name="images")
        x = inputs
    else:
        inputs = keras.utils.get_source_inputs(input_tensor)
        inputs = inputs[0] if len(inputs) == 1 else inputs
        x = input_tensor

    if data_format == "channels_first":
        # Every layer computes channels-last; the layout changes once here
        # (and back once for a 4-D backbone output and the pyramid levels).
        x = keras.layers.Permute((2, 3, 1), name=naming.TO_CHANNELS_LAST, dtype=dtype)(x)
    if include_preprocessing and hwc[-1] == 3:
        x = imagenet_normalization(naming.PREPROCESSING, dtype)(x)
    specs = config.stage_specs(hwc[:2], pin_late_grids)
    x = _backbone(x, config, specs, drop_path_rate, dtype)

    if include_top:
        x = classification_top(x, config, classes, classifier_activation, dtype)
    elif pooling == "avg":
        x = keras.layers.GlobalAveragePooling2D(data_format="channels_last",
                                               name=naming.POOLING["avg"], dtype=dtype)(x)
    elif pooling == "max":
        x = keras.layers.GlobalMaxPooling2D(data_format="channels_last",
                                           name=naming.POOLING["max"], dtype=dtype)(x)
    elif data_format == "channels_first":
        x = keras.layers.Permute((3, 1, 2), name=naming.TO_CHANNELS_FIRST, dtype=dtype)(x)

    architecture = {
        "variant": variants_lib.variant_name(config), "config": config.to_dict(),
        "include_top": bool(include_top), "classes": int(classes) if include_top else None,
        "data_format": data_format,
    }
    model = HiriViTModel(inputs=inputs, outputs=x, name=name, architecture=architecture)
    if checkpoint is not None:
        path, stored_classes = checkpoint

        def build_source(source_classes):
            return HiriViT(
                config, input_shape=input_shape, data_format=data_format,
                include_top=source_classes is not None,
                classes=source_classes or 1, classifier_activation=None,
                include_preprocessing=include_preprocessing, pin_late_grids=pin_late_grids,
            )

        weights_lib.load_into(model, path, stored_classes, build_source)
    return model


def classification_top(x, config, classes, classifier_activation, dtype=None):
    """The top on a stage-5 map ``x``: class-attention head, LayerNorm,
    classifier (and its activation unless ``None``). The head takes the
    dtype policy ``dtype``; the classifier always computes in float32 (under a
    mixed-precision policy the rest of the network runs in float16 / bfloat16)."""
    last = config.stage_specs()[-1]
    x = ClassAttentionHead(last.width, config.heads(last.stage - 1), last.mlp_ratio,
                           name=naming.HEAD, dtype=dtype)(x)
    x = layer_norm(naming.HEAD_NORM, dtype="float32")(x)
    x = dense(classes, name=naming.CLASSIFIER, dtype="float32")(x)
    if classifier_activation is not None:
        x = keras.layers.Activation(
            classifier_activation, dtype="float32", name=naming.CLASSIFIER_ACTIVATION
        )(x)
    return x


def _backbone(x, config, specs, drop_path_rate, dtype=None):
    """Stem, then per stage: downsampling (and pinned-grid resize), blocks, norm,
    every layer with the dtype policy ``dtype`` (``None``: Keras' global one)."""
    stem_kwargs = {"norm": specs[0].norm} if config.stem == "vit" else {}
    x = STEMS[config.stem](specs[0].width, name=naming.STEM, dtype=dtype, **stem_kwargs)(x)
    rates = iter(np.linspace(0.0, drop_path_rate, sum(s.depth for s in specs)).tolist())
    for spec in specs:
        if spec.downsample is not None:
            x = DOWNSAMPLERS[spec.downsample](spec, name=naming.downsample(spec.stage),
                                              dtype=dtype)(x)
        if spec.resize_to is not None:
            x = GridResize(spec.resize_to, name=naming.resize(spec.stage), dtype=dtype)(x)
        heads = {"num_heads": spec.heads} if spec.heads is not None else {}
        for j in range(1, spec.depth + 1):
            x = BLOCKS[spec.block](
                spec.width, mlp_ratio=spec.mlp_ratio, drop_path=next(rates),
                name=naming.block(spec.stage, j), dtype=dtype, **heads,
            )(x)
        x = make_norm(spec.norm, naming.stage_norm(spec.stage), dtype=dtype)(x)
    return x


_ARGS_DOC = """        input_shape: ``(height, width, 3)`` (``(3, height, width)`` for
            channels_first). Any size with both sides >= 64
            works, square or not, and ``None`` sides are allowed (dynamic).
            Default: ``(448, 448, 3)`` with the top, ``(None, None, 3)`` without.
            **Stride rule:** every stride-2 step maps a side ``n`` to
            ``ceil(n / 2)``, so the five stages run on ``ceil(n/4)``,
            ``ceil(n/8)``, ``ceil(n/16)``, ``ceil(n/32)`` and ``ceil(n/64)``.
        include_top: add the class-attention head and the classifier.
        weights: ``None``, a registry name or a ``.weights.h5`` / ``.keras``
            path. ``"imagenet"`` raises: no ImageNet checkpoint exists.
        input_tensor: optional Keras tensor to build the model on.
        pooling: without the top, ``None`` (4-D stage-5 map), ``"avg"`` or
            ``"max"``.
        classes: classifier width (with the top).
        classifier_activation: activation of the classifier; ``None`` returns
            logits.
        name: model name (layer names never depend on it).
        include_preprocessing: normalise ``[0, 255]`` RGB inside the model with
            the ImageNet mean/std (so :func:`preprocess_input` is a no-op).
            A backbone (``include_top=False``, no weights) with 1, 4 or any
            other number of channels skips it, as keras.applications does.
        drop_path_rate: stochastic-depth rate, linear over all blocks.
        pin_late_grids: run stages 3-5 on at least the 448 grids (28, 14, 7),
            as the paper's 224/384 numbers require (``docs/DESIGN.md``): the
            second IRDS-a keeps stride 1 when the stage-2 grid is already 28,
            otherwise its output is resized to the pinned grid.
        block_types: ablation (Table VIII): one of ``"hr"``, ``"cffn"``,
            ``"transformer"`` per stage.
        stem: ablation (Table VII): ``"hr"``, ``"conv"`` or ``"vit"``.
        downsample: ablation (Table VII): ``"irds"`` or ``"plain"``.
        reset_head: with ``include_top=True`` and a checkpoint whose classes
            differ (or that has no classifier), load the backbone and leave the
            classifier randomly initialised (transfer learning). Without it such
            a mismatch is a ``ValueError``.
        data_format: ``"channels_last"`` or ``"channels_first"`` (the layout of
            ``input_shape``, the input, a 4-D backbone output and the pyramid
            levels); ``None`` reads ``keras.config.image_data_format()``. The
            layers compute channels-last either way (the layout changes once at
            the input), so the weights of both formats are the same.
        dtype: the dtype policy of every layer (``"float32"``,
            ``"mixed_bfloat16"``, a ``keras.DTypePolicy``...); ``None`` uses
            ``keras.config.dtype_policy()``. The classifier (its LayerNorm,
            Dense and activation) always computes in float32.
"""

_RETURNS_DOC = """
    Returns:
        A :class:`HiriViTModel` with ``pyramid_outputs`` (``"P2"``-``"P6"``),
        ``feature_info``, ``classifier`` and ``head_norm``.

    Raises:
        ValueError: on any bad argument or checkpoint, before any layer is
            created.
"""

HiriViT.__doc__ = (
    """Builds a HIRI-ViT (Yao et al., arXiv 2403.11999) as a functional model.

    Args:
        variant: ``"S"``, ``"B"``, ``"L"`` (Table I), ``"tiny"`` (a small CPU
            network, not from the paper) or a ``HiriViTConfig``.
""" + _ARGS_DOC + _RETURNS_DOC
)

_VARIANT_DOC = """Builds HIRI-ViT-{letter} (Table I of Yao et al., arXiv 2403.11999).

    Paper: {params} M parameters, {gmacs} GMACs at 448x448. No ImageNet
    weights exist (``weights="imagenet"`` raises and says why).

    Args:
""" + _ARGS_DOC + _RETURNS_DOC


def _make_variant(letter):
    def builder(
        input_shape=None,
        include_top=True,
        weights=None,
        input_tensor=None,
        pooling=None,
        classes=1000,
        classifier_activation="softmax",
        name=None,
        *,
        include_preprocessing=True,
        drop_path_rate=0.0,
        pin_late_grids=False,
        block_types=None,
        stem=None,
        downsample=None,
        reset_head=False,
        data_format=None,
        dtype=None,
    ):
        return HiriViT(
            letter, input_shape, include_top, weights, input_tensor, pooling,
            classes, classifier_activation, name,
            include_preprocessing=include_preprocessing, drop_path_rate=drop_path_rate,
            pin_late_grids=pin_late_grids, block_types=block_types, stem=stem,
            downsample=downsample, reset_head=reset_head, data_format=data_format,
            dtype=dtype,
        )

    builder.__name__ = builder.__qualname__ = f"HiriViT{letter}"
    paper = variants_lib.PAPER[letter]
    builder.__doc__ = _VARIANT_DOC.format(
        letter=letter, params=paper["params_m"], gmacs=paper["gmacs"][448]
    )
    return builder


HiriViTS = _make_variant("S")
HiriViTB = _make_variant("B")
HiriViTL = _make_variant("L")
