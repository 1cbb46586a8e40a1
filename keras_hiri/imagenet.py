"""ImageNet helpers in the ``keras.applications`` form, working offline.

The class index (synset id and short name for the 1000 ImageNet-1k classes)
ships with the package (``keras_hiri/data/imagenet_class_index.json``, built
from timm's ImageNet synset/lemma tables, Apache-2.0), so nothing is downloaded.
"""

import functools
import json
import os

import keras
import numpy as np

from keras_hiri import checks
from keras_hiri.builder import IMAGENET_MEAN, IMAGENET_STD

_INDEX_PATH = os.path.join(os.path.dirname(__file__), "data", "imagenet_class_index.json")
MODES = ("in_model", "torch")
DATA_FORMATS = ("channels_last", "channels_first")


@functools.lru_cache(maxsize=1)
def class_index():
    """``{index: (synset_id, name)}`` for the 1000 ImageNet-1k classes."""
    with open(_INDEX_PATH) as f:
        return {int(k): tuple(v) for k, v in json.load(f).items()}


def _is_tf_tensor(x):
    """A TensorFlow tensor (e.g. inside ``tf.data``), told apart without importing TF."""
    return type(x).__module__.startswith("tensorflow")


def preprocess_input(x, data_format=None, mode="in_model"):
    """Prepares ``[0, 255]`` RGB images for a HIRI-ViT.

    Models built with ``include_preprocessing=True`` (the default) normalise
    inside the graph, so the default ``mode="in_model"`` only casts to float32
    (as ``keras.applications.convnext.preprocess_input`` is a no-op).
    ``mode="torch"`` scales to ``[0, 1]`` and normalises with the ImageNet
    mean/std, for models built with ``include_preprocessing=False``.

    Like Keras' own, it takes NumPy arrays (returns NumPy), backend tensors and
    symbolic tensors (a ``Lambda`` layer, ``jit``), and TensorFlow tensors
    inside a ``tf.data`` pipeline on any backend.

    Args:
        x: images, ``(..., H, W, 3)`` (channels_last) or ``(..., 3, H, W)``.
        data_format: ``"channels_last"``, ``"channels_first"`` or ``None``
            (``keras.config.image_data_format()``).
        mode: ``"in_model"`` or ``"torch"``.
    """
    data_format = data_format or keras.config.image_data_format()
    if data_format not in DATA_FORMATS:
        raise ValueError(
            f"data_format must be one of {DATA_FORMATS} or None. Received: data_format={data_format!r}"
        )
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}. Received: mode={mode!r}")
    if _is_tf_tensor(x):
        import tensorflow as tf

        x, lib = tf.cast(x, tf.float32), tf
    elif isinstance(x, (np.ndarray, list, tuple, int, float)) or np.isscalar(x):
        x, lib = np.asarray(x, dtype="float32"), np
    else:
        x, lib = keras.ops.cast(x, "float32"), keras.ops
    if mode == "in_model":
        return x
    axis = -1 if data_format == "channels_last" else -3
    if len(x.shape) < 3 or x.shape[axis] != 3:
        raise ValueError(
            f"mode='torch' normalises RGB images: expected 3 channels on axis {axis} "
            f"({data_format}). Received shape {tuple(x.shape)}"
        )
    stats_shape = (3,) if axis == -1 else (3, 1, 1)
    mean = np.reshape(np.array(IMAGENET_MEAN, "float32"), stats_shape)
    std = np.reshape(np.array(IMAGENET_STD, "float32"), stats_shape)
    if lib is np:
        return (x / 255.0 - mean) / std
    return (x / 255.0 - lib.convert_to_tensor(mean)) / lib.convert_to_tensor(std)


def decode_predictions(preds, top=5):
    """Top-``top`` ``(synset_id, name, score)`` tuples per row of ``preds``.

    Args:
        preds: ``(batch, 1000)`` scores (probabilities or logits): a NumPy
            array or a tensor of any backend (a PyTorch tensor that requires
            grad included).
        top: how many classes per image.
    """
    preds = preds if isinstance(preds, np.ndarray) else keras.ops.convert_to_numpy(preds)
    if preds.ndim != 2 or preds.shape[1] != 1000:
        raise ValueError(
            "decode_predictions expects a batch of ImageNet-1k predictions, shape "
            f"(samples, 1000). Received shape {preds.shape}"
        )
    checks.int_at_least("top", top)
    if top > 1000:
        raise ValueError(f"top must be at most 1000 (the classes). Received: top={top}")
    index = class_index()
    results = []
    for row in preds:
        best = np.argsort(row)[::-1][:top]
        results.append([(*index[int(i)], float(row[i])) for i in best])
    return results
