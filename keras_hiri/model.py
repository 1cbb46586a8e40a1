"""The functional HIRI-ViT model: :class:`HiriViTModel`, what the builder
returns, with its accessors (pyramid levels, feature info, classifier)."""

import json

import keras

from keras_hiri import naming
from keras_hiri.io import weights as weights_lib
from keras_hiri.layers import register
from keras_hiri.layers.drop_path import DropPath


def to_hwc(shape, data_format):
    """``(height, width, channels)`` of an input shape given in ``data_format``."""
    return tuple(shape) if data_format == "channels_last" else (*shape[1:], shape[0])


class DescribedModel(keras.Model):
    """A functional model that records what its builder built
    (:attr:`architecture`), saved with its config and revived with it."""

    def __init__(self, *args, architecture=None, **kwargs):
        super().__init__(*args, **kwargs)
        # Kept as JSON text; the property parses it.
        self.architecture_json = None if architecture is None else json.dumps(architecture)

    @property
    def architecture(self):
        """The builder's arguments (``None`` for a model built otherwise)."""
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


@register
class HiriViTModel(DescribedModel):
    """A functional HIRI-ViT. Adds :attr:`pyramid_outputs` and :attr:`feature_info`.

    Built by :func:`HiriViT`; revived as this class by ``keras.saving``. Its
    :attr:`architecture` (``{"variant", "config", "include_top", "classes",
    "data_format"}``) is also written into every ``.weights.h5`` file it saves,
    so a checkpoint describes itself.
    """

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
        size = to_hwc(self.inputs[0].shape[1:], self.data_format)[:2]
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
