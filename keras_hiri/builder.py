"""Functional builder: ``HiriViT`` and the ``HiriViTS/B/L`` shortcuts.

Follows ``keras.applications``: the same arguments, validation before any layer
exists, preprocessing inside the model, deterministic layer names.
"""

import contextlib
import inspect

import keras
import numpy as np

from keras_hiri import checks, naming
from keras_hiri import variants as variants_lib
from keras_hiri.io import weights as weights_lib
from keras_hiri.layers.blocks import BLOCKS
from keras_hiri.layers.conv import dense
from keras_hiri.layers.downsampling import DOWNSAMPLERS
from keras_hiri.layers.head import ClassAttentionHead
from keras_hiri.layers.norm import layer_norm, make_norm
from keras_hiri.layers.resample import GridResize
from keras_hiri.layers.stem import STEMS
from keras_hiri.model import HiriViTModel, is_channels_first  # noqa: F401  (re-exported)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def imagenet_normalization(name=None, dtype=None):
    """The in-model preprocessing: ``[0, 255]`` RGB to ImageNet-standardised
    (the mean and standard deviation the paper's training used)."""
    return keras.layers.Normalization(
        mean=[255.0 * m for m in IMAGENET_MEAN],
        variance=[(255.0 * s) ** 2 for s in IMAGENET_STD],
        name=name, dtype=dtype,
    )


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
    remat=False,
):
    config = _variant_config(variant, block_types, stem, downsample)
    input_shape, data_format = checks.model_arguments(
        include_top=include_top, weights=weights, input_tensor=input_tensor, input_shape=input_shape,
        pooling=pooling, classes=classes, classifier_activation=classifier_activation,
        include_preprocessing=include_preprocessing, drop_path_rate=drop_path_rate,
        pin_late_grids=pin_late_grids, data_format=data_format, reset_head=reset_head)
    hwc = checks.to_hwc(input_shape, data_format)
    # The checkpoint is found, read and matched against the arguments before
    # any layer exists (nothing half-built or half-loaded on a bad file).
    checkpoint = weights_lib.resolve_checkpoint(
        weights, config, include_top=include_top, classes=classes, reset_head=reset_head
    )
    letter = variants_lib.variant_name(config)
    name = name or (f"hiri_vit_{letter.lower()}" if letter else "hiri_vit_custom")
    inputs, x = _inputs(input_tensor, input_shape)
    if data_format == "channels_first":
        # Every layer computes channels-last; the layout changes once here
        # (and back once for a 4-D backbone output and the pyramid levels).
        x = keras.layers.Permute((2, 3, 1), name=naming.TO_CHANNELS_LAST, dtype=dtype)(x)
    if include_preprocessing and hwc[-1] == 3:
        x = imagenet_normalization(naming.PREPROCESSING, dtype)(x)
    specs = config.stage_specs(hwc[:2], pin_late_grids)
    with keras.RematScope(mode="list_of_layers", layer_names=remat_layer_names(specs)) if remat \
            else contextlib.nullcontext():
        x = _backbone(x, config, specs, drop_path_rate, dtype)
    if include_top:
        x = classification_top(x, config, classes, classifier_activation, dtype)
    else:
        x = _backbone_output(x, pooling, data_format, dtype)
    architecture = {"variant": letter, "config": config.to_dict(), "include_top": bool(include_top),
                    "classes": int(classes) if include_top else None, "data_format": data_format}
    model = HiriViTModel(inputs=inputs, outputs=x, name=name, architecture=architecture)
    if checkpoint is not None:
        source_args = dict(input_shape=input_shape, data_format=data_format, classifier_activation=None,
                           include_preprocessing=include_preprocessing, pin_late_grids=pin_late_grids)
        _load_checkpoint(model, checkpoint, config, source_args)
    return model


def _load_checkpoint(model, checkpoint, config, source_args):
    """Loads ``checkpoint`` (``(path, stored classes)``) into ``model``; a
    source model with the stored classifier (built from ``source_args``) takes
    the file first where the classes differ (see ``weights.load_into``)."""
    path, stored_classes = checkpoint

    def build_source(source_classes):
        return HiriViT(config, include_top=source_classes is not None, classes=source_classes or 1,
                       **source_args)

    weights_lib.load_into(model, path, stored_classes, build_source)


def _inputs(input_tensor, input_shape):
    """The model's inputs and the tensor the network starts from."""
    if input_tensor is None:
        inputs = keras.Input(shape=input_shape, name="images")
        return inputs, inputs
    inputs = keras.utils.get_source_inputs(input_tensor)
    return (inputs[0] if len(inputs) == 1 else inputs), input_tensor


def remat_layer_names(specs):
    """The layers ``remat=True`` recomputes in the backward pass: the stem, each
    downsampling and each block (their sub-layers run inside them)."""
    names = [naming.STEM]
    for spec in specs:
        if spec.downsample is not None:
            names.append(naming.downsample(spec.stage))
        names += [naming.block(spec.stage, j) for j in range(1, spec.depth + 1)]
    return names


def _backbone_output(x, pooling, data_format, dtype):
    """Without the top: the pooled features, or the stage-5 map in ``data_format``."""
    if pooling == "avg":
        return keras.layers.GlobalAveragePooling2D(data_format="channels_last",
                                                   name=naming.POOLING["avg"], dtype=dtype)(x)
    if pooling == "max":
        return keras.layers.GlobalMaxPooling2D(data_format="channels_last",
                                               name=naming.POOLING["max"], dtype=dtype)(x)
    if data_format == "channels_first":
        return keras.layers.Permute((3, 1, 2), name=naming.TO_CHANNELS_FIRST, dtype=dtype)(x)
    return x


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
    # The model transposes a channels_first input once (``to_channels_last``):
    # its layers all compute channels-last.
    layout = {"data_format": "channels_last", "dtype": dtype}
    stem_kwargs = {"norm": specs[0].norm} if config.stem == "vit" else {}
    x = STEMS[config.stem](specs[0].width, name=naming.STEM, **layout, **stem_kwargs)(x)
    rates = iter(np.linspace(0.0, drop_path_rate, sum(s.depth for s in specs)).tolist())
    for spec in specs:
        if spec.downsample is not None:
            x = DOWNSAMPLERS[spec.downsample](spec, name=naming.downsample(spec.stage), **layout)(x)
        if spec.resize_to is not None:
            x = GridResize(spec.resize_to, name=naming.resize(spec.stage), dtype=dtype)(x)
        heads = {"num_heads": spec.heads} if spec.heads is not None else {}
        for j in range(1, spec.depth + 1):
            x = BLOCKS[spec.block](
                spec.width, mlp_ratio=spec.mlp_ratio, drop_path=next(rates),
                name=naming.block(spec.stage, j), **layout, **heads,
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
        remat: gradient checkpointing: the stem, the downsampling layers and
            the blocks keep only their inputs for the backward pass and
            recompute the rest there (``keras.RematScope``; any backend).
            Less training memory for more time; outputs and gradients are the
            same. Not saved with the model (a training choice).
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
    def builder(*args, **kwargs):
        return HiriViT(letter, *args, **kwargs)

    # HiriViT's signature without ``variant``, for help() and IDEs.
    signature = inspect.signature(HiriViT)
    builder.__signature__ = signature.replace(parameters=list(signature.parameters.values())[1:])
    builder.__name__ = builder.__qualname__ = f"HiriViT{letter}"
    paper = variants_lib.PAPER[letter]
    builder.__doc__ = _VARIANT_DOC.format(
        letter=letter, params=paper["params_m"], gmacs=paper["gmacs"][448]
    )
    return builder


HiriViTS = _make_variant("S")
HiriViTB = _make_variant("B")
HiriViTL = _make_variant("L")
