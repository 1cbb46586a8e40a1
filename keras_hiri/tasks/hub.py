"""HIRI-ViT in keras-hub: a ``FeaturePyramidBackbone``, an ``ImageClassifier``
task with the paper's class-attention head, and presets of the weights registry.

Needs the optional extra ``pip install "keras-hiri[hub]"`` (keras-hub). This
module is imported on first use (``keras_hiri.HiriViTBackbone``,
``import keras_hiri.tasks.hub``), never by ``import keras_hiri``: keras-hub imports
TensorFlow on every backend. Import it before loading a HIRI-ViT preset or
``.keras`` file through keras-hub's own classes, so that the classes are
registered::

    import keras_hiri.tasks.hub
    backbone = keras_hub.models.Backbone.from_preset(keras_hiri.tasks.hub.preset_dir(
        "tiny_skimage_patches_64"))
    detector = keras_hub.models.RetinaNetObjectDetector(
        backbone=keras_hub.models.RetinaNetBackbone(
            image_encoder=backbone, min_level=3, max_level=7, use_p5=False),
        num_classes=3)
"""

import keras

from keras_hiri import builder, checks, naming
from keras_hiri.training.recipe import DEFAULTS
from keras_hiri.layers.blocks import MultiHeadSelfAttention
from keras_hiri.layers.composite import model_layers
from keras_hiri.tasks import segmentation
from keras_hiri.tasks.hub_presets import PRESETS_CACHE, local_preset, preset_dir, presets  # noqa: F401
from keras_hiri import variants as variants_lib

try:
    import keras_hub
except ModuleNotFoundError as error:  # pragma: no cover - exercised without the extra
    raise ImportError(
        "keras_hiri.tasks.hub needs keras-hub, which is not installed. Install the "
        'extra: pip install "keras-hiri[hub]"'
    ) from error


def _hiri_config(variant):
    """A :class:`~keras_hiri.HiriViTConfig` from a name, a config or its dict."""
    if isinstance(variant, dict):
        variant = variants_lib.HiriViTConfig(
            **{k: tuple(v) if isinstance(v, list) else v for k, v in variant.items()}
        )
    return variants_lib.get_config(variant)


def _serializable_variant(config):
    """The variant's name, or its config dict for a variant without one."""
    return variants_lib.variant_name(config) or config.to_dict()


class _RegistryPresets:
    """``from_preset`` of keras-hub, where ``preset`` may also name a checkpoint
    of keras_hiri's weights registry (see :func:`preset_dir`; a task without
    that checkpoint's head gets its backbone and a random head)."""

    @classmethod
    def from_preset(cls, preset, load_weights=True, **kwargs):
        """keras-hub's ``from_preset``; ``preset`` may also be a registry name."""
        return super().from_preset(local_preset(preset), load_weights=load_weights, **kwargs)


@keras.saving.register_keras_serializable(package="keras_hiri")
class HiriViTBackbone(_RegistryPresets, keras_hub.models.FeaturePyramidBackbone):
    """HIRI-ViT without its top, as a keras-hub ``FeaturePyramidBackbone``.

    The layers (and their names, so every registry checkpoint loads) are those
    of :func:`keras_hiri.HiriViT` with ``include_top=False``; ``pyramid_outputs``
    holds ``"P2"``-``"P6"``, level ``Pn`` at stride ``2**n``, as keras-hub's
    detection and segmentation tasks expect.

    Args:
        variant: ``"S"``, ``"B"``, ``"L"``, ``"tiny"`` or a
            :class:`~keras_hiri.HiriViTConfig` (or its ``to_dict()``).
        image_shape: input shape, ``(height, width, 3)`` by default with
            ``None`` sides (any size; see :func:`keras_hiri.HiriViT`).
        include_preprocessing: normalise ``[0, 255]`` RGB inside the model.
        drop_path_rate: stochastic-depth rate, linear over all blocks.
        pin_late_grids: see :func:`keras_hiri.HiriViT`. Allowed only where the
            levels keep their ``2**n`` strides (a 448 input); otherwise two
            levels share a stride and keras-hub's names would lie, so a
            ``ValueError`` says so.
        data_format: ``"channels_last"`` / ``"channels_first"`` / ``None``.
        dtype: dtype policy of every layer (keras-hub convention).
    """

    def __init__(
        self,
        variant="tiny",
        image_shape=(None, None, 3),
        include_preprocessing=True,
        drop_path_rate=0.0,
        pin_late_grids=False,
        data_format=None,
        dtype=None,
        **kwargs,
    ):
        config = _hiri_config(variant)
        encoder = builder.HiriViT(
            config, input_shape=image_shape, include_top=False,
            include_preprocessing=include_preprocessing, drop_path_rate=drop_path_rate,
            pin_late_grids=pin_late_grids, data_format=data_format, dtype=dtype,
        )
        _check_level_strides(encoder, image_shape, pin_late_grids)
        pyramid = encoder.pyramid_outputs
        super().__init__(inputs=encoder.input, outputs=encoder.output, dtype=dtype, **kwargs)
        self.pyramid_outputs = pyramid

        self.variant = _serializable_variant(config)
        self.image_shape = tuple(image_shape)
        self.include_preprocessing = include_preprocessing
        self.drop_path_rate = drop_path_rate
        self.pin_late_grids = pin_late_grids
        self.data_format = encoder.data_format

    @property
    def hiri_config(self):
        """The :class:`~keras_hiri.HiriViTConfig` of this backbone."""
        return _hiri_config(self.variant)

    def default_lora_layer_names(self):
        """The layers keras-hub's ``enable_lora(rank)`` turns into LoRA layers:
        the query (``q``) and the fused key-value (``kv``) projection of every
        self-attention (stages 4-5). Everything else is frozen, so with a new
        head only the LoRA factors and the head train."""
        return [dense.name for layer in model_layers(self) if isinstance(layer, MultiHeadSelfAttention)
                for dense in (layer.q, layer.kv)]

    def get_config(self):
        config = super().get_config()
        config.update(
            variant=self.variant, image_shape=self.image_shape,
            include_preprocessing=self.include_preprocessing,
            drop_path_rate=self.drop_path_rate, pin_late_grids=self.pin_late_grids,
            data_format=self.data_format,
        )
        return config


def _check_level_strides(encoder, image_shape, pin_late_grids):
    if not pin_late_grids:
        return
    strides = [info["reduction"] for info in encoder.feature_info]
    nominal = [2 ** (i + 2) for i in range(len(strides))]
    if strides != nominal:
        raise ValueError(
            f"pin_late_grids=True at image_shape={tuple(image_shape)} puts the levels "
            f"at strides {tuple(strides)}, but keras-hub names a level Pn only at "
            f"stride 2**n ({tuple(nominal)}), so its FPN and detection heads would "
            "misalign them. Use pin_late_grids=False (the default) for a keras-hub "
            "backbone, or a 448x448 input, where the pinned grids are the plain ones."
        )


@keras.saving.register_keras_serializable(package="keras_hiri")
class HiriViTImageConverter(keras_hub.layers.ImageConverter):
    """keras-hub's image converter for HIRI-ViT: the evaluation crop, no normalisation.

    An image of any size becomes the model's ``image_size`` the way the
    recipe evaluates (:func:`keras_hiri.training.augmentation.eval_transform`):
    its central square, resized so that ``image_size / crop_pct`` covers it,
    then the central ``image_size`` (``crop_pct=1``: the central square,
    resized). Pixel values stay ``[0, 255]``: the model normalises them itself
    (``include_preprocessing=True``), so the converter has no ``scale`` or
    ``offset`` and refuses them (one owner of the normalisation).

    Args:
        image_size: ``(height, width)`` of the output (``None``: no resizing).
        crop_pct: the share of the resized image kept, in ``(0, 1]``
            (default: the recipe's 0.875).
        interpolation, antialias, data_format: as keras-hub's ``ImageConverter``.
    """

    backbone_cls = HiriViTBackbone

    def __init__(self, image_size=None, crop_pct=DEFAULTS["crop_pct"], interpolation="bilinear",
                 antialias=True, **kwargs):
        for name in ("scale", "offset"):
            if kwargs.pop(name, None) is not None:
                raise ValueError(
                    f"HiriViTImageConverter takes no {name}: HIRI-ViT normalises [0, 255] RGB inside the "
                    "model (include_preprocessing=True), so the converter only resizes and crops."
                )
        kwargs.pop("crop_to_aspect_ratio", None)
        super().__init__(image_size=image_size, crop_to_aspect_ratio=True, interpolation=interpolation,
                         antialias=antialias, **kwargs)
        checks.number_in("crop_pct", crop_pct, 0, 1, low_open=True, owner="HiriViTImageConverter")
        self.crop_pct = float(crop_pct)
        self.enlarge = keras.layers.Resizing(1, 1, crop_to_aspect_ratio=True, interpolation=interpolation,
                                             antialias=antialias, data_format=self.data_format,
                                             dtype=self.dtype_policy, name="enlarge")
        self.center_crop = keras.layers.CenterCrop(1, 1, data_format=self.data_format,
                                                   dtype=self.dtype_policy, name="center_crop")

    def call(self, inputs):
        if self.image_size is None or self.crop_pct == 1.0:
            return super().call(inputs)
        height, width = self.image_size
        self.enlarge.height, self.enlarge.width = round(height / self.crop_pct), round(width / self.crop_pct)
        self.center_crop.height, self.center_crop.width = height, width
        return super().call(self.center_crop(self.enlarge(inputs)))

    def get_config(self):
        config = super().get_config()
        config.update(crop_pct=self.crop_pct)
        for name in ("scale", "offset", "crop_to_aspect_ratio"):
            config.pop(name, None)
        return config


@keras.saving.register_keras_serializable(package="keras_hiri")
class HiriViTImageClassifierPreprocessor(keras_hub.models.ImageClassifierPreprocessor):
    """keras-hub's classifier preprocessor with :class:`HiriViTImageConverter`."""

    backbone_cls = HiriViTBackbone
    image_converter_cls = HiriViTImageConverter


@keras.saving.register_keras_serializable(package="keras_hiri")
class HiriViTImageSegmenterPreprocessor(keras_hub.models.ImageSegmenterPreprocessor):
    """keras-hub's segmenter preprocessor with :class:`HiriViTImageConverter`
    (use ``crop_pct=1``). Masks are resized with the images (nearest-neighbour)
    unless ``resize_output_mask=False``."""

    backbone_cls = HiriViTBackbone
    image_converter_cls = HiriViTImageConverter

    def __init__(self, image_converter=None, resize_output_mask=True, **kwargs):
        super().__init__(image_converter=image_converter, resize_output_mask=resize_output_mask, **kwargs)


@keras.saving.register_keras_serializable(package="keras_hiri")
class HiriViTImageClassifier(_RegistryPresets, keras_hub.models.ImageClassifier):
    """A HIRI-ViT classifier as a keras-hub ``ImageClassifier`` task: the
    backbone, then the paper's class-attention head, its LayerNorm and the
    classifier (float32), exactly the top of :func:`keras_hiri.HiriViT`, so a
    registry checkpoint's classifier loads into it.

    Args:
        backbone: a :class:`HiriViTBackbone`.
        num_classes: classifier width.
        preprocessor: optional :class:`HiriViTImageClassifierPreprocessor`
            (resizing and the evaluation crop; the backbone normalises
            ``[0, 255]`` RGB itself). Registry presets carry one at their
            resolution, so ``predict`` takes images of any size.
        activation: activation of the predictions (``None``: logits, the
            keras-hub default; ``"softmax"`` as ``keras_hiri.HiriViT``).
        head_dtype: dtype policy of the class-attention head (default: the
            backbone's).
    """

    backbone_cls = HiriViTBackbone
    preprocessor_cls = HiriViTImageClassifierPreprocessor

    def __init__(self, backbone, num_classes, preprocessor=None, activation=None,
                 head_dtype=None, **kwargs):
        if not isinstance(backbone, HiriViTBackbone):
            raise ValueError(
                "HiriViTImageClassifier needs a keras_hiri.HiriViTBackbone. Received: "
                f"{type(backbone).__name__} (use keras_hub.models.ImageClassifier for "
                "other backbones)"
            )
        head_dtype = head_dtype or backbone.dtype_policy
        self.backbone = backbone
        self.preprocessor = preprocessor
        inputs = backbone.input
        x = backbone(inputs)
        if backbone.data_format == "channels_first":
            x = keras.layers.Permute((2, 3, 1), name="head_channels_last", dtype=head_dtype)(x)
        outputs = builder.classification_top(
            x, backbone.hiri_config, num_classes, activation, dtype=head_dtype
        )
        keras_hub.models.Task.__init__(self, inputs=inputs, outputs=outputs, **kwargs)
        self.num_classes = num_classes
        self.activation = activation
        self.pooling = "class_attention"
        self.dropout = 0.0

    @classmethod
    def from_preset(cls, preset, load_weights=True, **kwargs):
        """keras-hub's ``from_preset`` (``preset`` may be a registry name). With
        another ``num_classes`` than the preset's, keras-hub loads the backbone
        only; here the class-attention head and its norm load too (they do not
        depend on the classes) and only the classifier starts anew, as
        ``keras_hiri.HiriViT(weights=..., reset_head=True)`` does."""
        task = super().from_preset(preset, load_weights=load_weights, **kwargs)
        if load_weights and "num_classes" in kwargs:
            source = super().from_preset(preset, load_weights=True)
            if source.num_classes != task.num_classes:
                for name in (naming.HEAD, naming.HEAD_NORM):
                    task.get_layer(name).set_weights(source.get_layer(name).get_weights())
        return task

    def enable_lora(self, rank):
        """LoRA fine-tuning of the whole classifier: ``backbone.enable_lora(rank)``
        (the attention's query and key-value projections), the same on the
        class-attention head's attention, everything else frozen but the
        classifier, which trains fully (a new task's head)."""
        self.backbone.enable_lora(rank)
        for name in (naming.HEAD, naming.HEAD_NORM):
            self.get_layer(name).trainable = False
        attention = self.get_layer(naming.HEAD).attn
        for dense in (attention.q, attention.kv):
            dense.trainable = True
            dense.enable_lora(rank)

    def get_config(self):
        config = keras_hub.models.Task.get_config(self)
        config.update(num_classes=self.num_classes,
                      activation=keras.activations.serialize(self.activation)
                      if callable(self.activation) else self.activation)
        return config


@keras.saving.register_keras_serializable(package="keras_hiri")
class HiriViTImageSegmenter(_RegistryPresets, keras_hub.models.ImageSegmenter):
    """Semantic FPN on a :class:`HiriViTBackbone` as a keras-hub
    ``ImageSegmenter`` task (the head of :mod:`keras_hiri.tasks.segmentation`):
    per-pixel logits ``(B, H, W, num_classes)`` at the input size.

    Args:
        backbone: a channels-last :class:`HiriViTBackbone` with a static
            ``image_shape``.
        num_classes: number of classes.
        fpn_channels: width of the FPN.
        head_channels: width of the semantic branch.
        preprocessor: optional keras-hub preprocessor.
    """

    backbone_cls = HiriViTBackbone
    preprocessor_cls = HiriViTImageSegmenterPreprocessor

    def __init__(self, backbone, num_classes, fpn_channels=128, head_channels=64,
                 preprocessor=None, **kwargs):
        if not isinstance(backbone, HiriViTBackbone):
            raise ValueError(
                "HiriViTImageSegmenter needs a keras_hiri.HiriViTBackbone. Received: "
                f"{type(backbone).__name__}"
            )
        image_size = segmentation.check_backbone(backbone, num_classes)
        self.backbone = backbone
        self.preprocessor = preprocessor
        inputs = keras.Input(backbone.image_shape, name="images")
        levels = keras.Model(backbone.inputs, backbone.pyramid_outputs,
                             name="pyramid")(inputs)
        logits = segmentation.semantic_fpn(levels, num_classes, image_size, fpn_channels,
                                           head_channels, dtype=backbone.dtype_policy)
        keras_hub.models.Task.__init__(self, inputs=inputs, outputs=logits, **kwargs)
        self.num_classes = num_classes
        self.fpn_channels = fpn_channels
        self.head_channels = head_channels

    def get_config(self):
        config = keras_hub.models.Task.get_config(self)
        config.update(num_classes=self.num_classes, fpn_channels=self.fpn_channels,
                      head_channels=self.head_channels)
        return config
