"""keras_hiri: HIRI-ViT (arXiv 2403.11999) for Keras 3 on TensorFlow, JAX and PyTorch.

Importing the package registers its layers with ``keras.saving`` (so a saved
``.keras`` HIRI-ViT loads after ``import keras_hiri``); it needs Keras and one
backend, not TensorFlow (unless TensorFlow is the backend).
"""

from keras_hiri.blocks import CFFN, CFFNBlock, HRBlock, MultiHeadSelfAttention, TransformerBlock
from keras_hiri.builder import HiriViT, HiriViTB, HiriViTL, HiriViTModel, HiriViTS
from keras_hiri.layers.conv import set_depthwise_implementation
from keras_hiri.layers.drop_path import DropPath
from keras_hiri.distillation import EMADistillation
from keras_hiri.downsampling import IRDSa, IRDSb, PlainDownsample
from keras_hiri.folding import fold_batchnorm
from keras_hiri.head import ClassAttentionHead
from keras_hiri.imagenet import decode_predictions, preprocess_input
from keras_hiri.pipeline import KeyedImageDataset
from keras_hiri.profiling import profile
from keras_hiri.recipe import Recipe
from keras_hiri.serving import export
from keras_hiri.stem import ConvStem, HRStem, ViTStem
from keras_hiri.training import train
from keras_hiri.variants import PAPER, VARIANTS, HiriViTConfig

__version__ = "0.1.0"

# keras-hub classes (extra [hub]): imported on first use, since keras-hub
# imports TensorFlow on every backend.
_HUB_NAMES = ("HiriViTBackbone", "HiriViTImageClassifier", "HiriViTImageSegmenter")


def __getattr__(name):
    if name in _HUB_NAMES:
        from keras_hiri import hub

        return getattr(hub, name)
    raise AttributeError(f"module 'keras_hiri' has no attribute {name!r}")


__all__ = [
    "CFFN", "CFFNBlock", "ClassAttentionHead", "ConvStem", "DropPath", "EMADistillation",
    "HRBlock", "HRStem", "HiriViT", "HiriViTB", "HiriViTBackbone", "HiriViTConfig",
    "HiriViTImageClassifier", "HiriViTImageSegmenter", "HiriViTL", "HiriViTModel",
    "HiriViTS", "IRDSa", "IRDSb", "KeyedImageDataset", "MultiHeadSelfAttention", "PAPER",
    "PlainDownsample", "Recipe", "TransformerBlock", "VARIANTS", "ViTStem", "decode_predictions",
    "export", "fold_batchnorm", "preprocess_input", "profile",
    "set_depthwise_implementation", "train",
]
