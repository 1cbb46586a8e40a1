"""keras_hiri: HIRI-ViT (arXiv 2403.11999) for Keras 3 on TensorFlow, JAX and PyTorch.

Importing the package registers its layers with ``keras.saving`` (so a saved
``.keras`` HIRI-ViT loads after ``import keras_hiri``); it needs Keras and one
backend, not TensorFlow (unless TensorFlow is the backend).
"""

from keras_hiri.layers.blocks import CFFN, CFFNBlock, HRBlock, MultiHeadSelfAttention, TransformerBlock
from keras_hiri import backbones, compat
from keras_hiri.builder import HiriViT, HiriViTB, HiriViTL, HiriViTS
from keras_hiri.layers.conv import set_depthwise_implementation
from keras_hiri.layers.drop_path import DropPath
from keras_hiri.training.distillation import EMADistillation
from keras_hiri.layers.downsampling import IRDSa, IRDSb, PlainDownsample
from keras_hiri.folding import fold_batchnorm
from keras_hiri.model import HiriViTModel
from keras_hiri.layers.head import ClassAttentionHead
from keras_hiri.imagenet import decode_predictions, preprocess_input
from keras_hiri.training.pipeline import KeyedImageDataset
from keras_hiri.profiling import profile
from keras_hiri.training.recipe import Recipe
from keras_hiri.io.serving import export
from keras_hiri.layers.stem import ConvStem, HRStem, ViTStem
from keras_hiri.training.run import train
from keras_hiri.variants import PAPER, VARIANTS, HiriViTConfig

__version__ = "0.1.0"

compat.install()  # old module paths (keras_hiri.training, ...) warn and resolve

# keras-hub classes (extra [hub]): imported on first use, since keras-hub
# imports TensorFlow on every backend.
_HUB_NAMES = ("HiriViTBackbone", "HiriViTImageClassifier", "HiriViTImageSegmenter")


def __getattr__(name):
    if name in _HUB_NAMES:
        from keras_hiri.tasks import hub

        return getattr(hub, name)
    if name in compat.MOVED:  # keras_hiri.serving etc.: the moved module, with a warning
        import importlib

        return importlib.import_module(f"keras_hiri.{name}")
    raise AttributeError(f"module 'keras_hiri' has no attribute {name!r}")


__all__ = [
    "backbones", "CFFN", "CFFNBlock", "ClassAttentionHead", "ConvStem", "DropPath", "EMADistillation",
    "HRBlock", "HRStem", "HiriViT", "HiriViTB", "HiriViTBackbone", "HiriViTConfig",
    "HiriViTImageClassifier", "HiriViTImageSegmenter", "HiriViTL", "HiriViTModel",
    "HiriViTS", "IRDSa", "IRDSb", "KeyedImageDataset", "MultiHeadSelfAttention", "PAPER",
    "PlainDownsample", "Recipe", "TransformerBlock", "VARIANTS", "ViTStem", "decode_predictions",
    "export", "fold_batchnorm", "preprocess_input", "profile",
    "set_depthwise_implementation", "train",
]
