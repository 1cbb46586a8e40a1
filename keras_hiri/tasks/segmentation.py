"""Semantic segmentation on HIRI-ViT: a Semantic FPN head over the pyramid.

The paper (Sec. 5.3) evaluates HIRI-ViT as the backbone of Semantic FPN and
UPerNet on ADE20K; keras-hub offers neither head. ``HiriViTSegmenter`` builds
Semantic FPN (Kirillov et al., "Panoptic Feature Pyramid Networks", 2019) on
the levels P2-P5 of any model with ``pyramid_outputs`` (a
:class:`~keras_hiri.HiriViTModel` or a keras-hub ``HiriViTBackbone``):

* an FPN: a 1x1 lateral convolution per level, a top-down pathway (nearest
  2x upsampling and addition) and a 3x3 convolution per level;
* the semantic branch: from each level, ``3x3 conv - BatchNorm - ReLU - 2x
  bilinear upsampling`` stages until stride 4 (one stage without upsampling for
  P2), summed;
* a 1x1 classifier and a bilinear resize to the input size: per-pixel logits.

Plain Keras (every backend, no keras-hub needed); its layers compute
channels-last and carry the names ``fpn_*`` / ``seg_*``.
"""

import keras

from keras_hiri import checks
from keras_hiri.model import is_channels_first

LEVELS = ("P2", "P3", "P4", "P5")


def _conv(filters, kernel, name, dtype=None):
    return keras.layers.Conv2D(filters, kernel, padding="same", name=name, dtype=dtype,
                               data_format="channels_last")


def _upsample(name, interpolation, dtype=None):
    return keras.layers.UpSampling2D(2, interpolation=interpolation, name=name, dtype=dtype,
                                     data_format="channels_last")


def semantic_fpn(levels, num_classes, image_size, fpn_channels=128, head_channels=64, dtype=None):
    """Semantic FPN logits ``(B, H, W, num_classes)`` from ``{"P2": ..., "P5": ...}``
    (channels-last symbolic tensors at strides 4-32), resized to ``image_size``."""
    missing = [key for key in LEVELS if key not in levels]
    if missing:
        raise ValueError(f"Semantic FPN needs the levels {LEVELS}; missing {missing}.")
    laterals = {key: _conv(fpn_channels, 1, f"fpn_lateral_{key}", dtype)(levels[key])
                for key in LEVELS}
    merged = {"P5": laterals["P5"]}
    for upper, lower in zip(LEVELS[::-1], LEVELS[::-1][1:]):
        up = _upsample(f"fpn_up_{upper}", "nearest", dtype)(merged[upper])
        # Odd grids (ceil strides) leave the upsampled map one row/column larger.
        up = keras.layers.Cropping2D(
            ((0, up.shape[1] - laterals[lower].shape[1]) if up.shape[1] else (0, 0),
             (0, up.shape[2] - laterals[lower].shape[2]) if up.shape[2] else (0, 0)),
            data_format="channels_last", name=f"fpn_crop_{upper}", dtype=dtype,
        )(up)
        merged[lower] = keras.layers.Add(name=f"fpn_add_{lower}", dtype=dtype)(
            [laterals[lower], up])
    branches = []
    for stage, key in enumerate(LEVELS):
        x = _conv(fpn_channels, 3, f"fpn_out_{key}", dtype)(merged[key])
        for step in range(max(stage, 1)):
            prefix = f"seg_{key}_{step}"
            x = _conv(head_channels, 3, f"{prefix}_conv", dtype)(x)
            x = keras.layers.BatchNormalization(name=f"{prefix}_bn", dtype=dtype)(x)
            x = keras.layers.ReLU(name=f"{prefix}_relu", dtype=dtype)(x)
            if stage > 0:
                x = _upsample(f"{prefix}_up", "bilinear", dtype)(x)
        if branches and x.shape[1] and branches[0].shape[1]:
            x = keras.layers.Cropping2D(
                ((0, x.shape[1] - branches[0].shape[1]), (0, x.shape[2] - branches[0].shape[2])),
                data_format="channels_last", name=f"seg_crop_{key}", dtype=dtype,
            )(x)
        branches.append(x)
    x = keras.layers.Add(name="seg_sum", dtype=dtype)(branches)
    x = _conv(num_classes, 1, "seg_classifier", dtype)(x)
    return keras.layers.Resizing(*image_size, interpolation="bilinear", name="seg_logits",
                                 dtype="float32", data_format="channels_last")(x)


def check_backbone(backbone, num_classes):
    """The static ``(height, width)`` input size of ``backbone``, after checking
    that a Semantic FPN with ``num_classes`` can sit on it: ``pyramid_outputs``,
    channels-last, a static size. ``ValueError`` naming what is wrong otherwise."""
    if not getattr(backbone, "pyramid_outputs", None):
        raise ValueError(
            "A Semantic FPN needs a backbone with pyramid_outputs (keras_hiri.HiriViT or "
            f"keras_hiri.HiriViTBackbone). Received: {type(backbone).__name__}"
        )
    if is_channels_first(backbone):
        raise ValueError("A Semantic FPN needs a channels_last backbone "
                         "(data_format='channels_last').")
    shape = tuple(backbone.inputs[0].shape[1:])
    if None in shape[:2]:
        raise ValueError(
            "A Semantic FPN needs a static input size (the logits are resized to it): a "
            "backbone built with a static image_shape (input_shape for keras_hiri.HiriViT). "
            f"Received input shape {shape}"
        )
    checks.int_at_least("num_classes", num_classes)
    return shape[:2]


def HiriViTSegmenter(backbone, num_classes, fpn_channels=128, head_channels=64, name=None):
    """A Semantic FPN segmenter on ``backbone`` (a channels-last model with
    ``pyramid_outputs`` and a static input size).

    Args:
        backbone: e.g. ``keras_hiri.HiriViT("tiny", include_top=False,
            input_shape=(128, 128, 3))`` or a ``keras_hiri.HiriViTBackbone``.
        num_classes: number of classes (per-pixel logits, no softmax).
        fpn_channels: width of the FPN.
        head_channels: width of the semantic branch.

    Returns:
        A ``keras.Model`` from images to ``(B, H, W, num_classes)`` logits;
        train it with ``SparseCategoricalCrossentropy(from_logits=True)`` on
        integer masks and score it with ``keras.metrics.MeanIoU``.
    """
    image_size = check_backbone(backbone, num_classes)
    logits = semantic_fpn(backbone.pyramid_outputs, num_classes, image_size, fpn_channels,
                          head_channels, dtype=backbone.dtype_policy)
    return keras.Model(backbone.inputs, logits, name=name or "hiri_vit_semantic_fpn")


def segformer_encoder(backbone):
    """``backbone``'s levels at strides 4-32 as keras-hub's SegFormer reads them.

    ``keras_hub.models.SegFormerBackbone(image_encoder=...)`` expects the level
    names of its MiT encoder (``"P1"`` for stride 4 up to ``"P4"`` for stride
    32, not the ``2**n`` names ``"P2"``-``"P5"`` that RetinaNet and DeepLabV3
    read) and a ``hidden_dims`` list of their widths. This returns a
    ``keras.Model`` over ``backbone``'s layers (shared, not copied) with those
    names and that attribute::

        encoder = segmentation.segformer_encoder(keras_hiri.HiriViTBackbone("S", image_shape=(256, 256, 3)))
        segmenter = keras_hub.models.SegFormerImageSegmenter(
            keras_hub.models.SegFormerBackbone(image_encoder=encoder, projection_filters=256),
            num_classes=150)

    The adapter is not a registered class: save such a segmenter's weights
    (``save_weights``), not a ``.keras`` file.
    """
    check_backbone(backbone, 1)
    levels = {f"P{int(key[1:]) - 1}": backbone.pyramid_outputs[key] for key in LEVELS}
    encoder = keras.Model(backbone.inputs[0], levels, name=f"{backbone.name}_segformer_levels")
    encoder.pyramid_outputs = levels
    encoder.hidden_dims = [int(level.shape[-1]) for level in levels.values()]
    return encoder
