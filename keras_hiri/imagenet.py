"""ImageNet helpers in the ``keras.applications`` form, working offline.

The class index (synset id and short name for the 1000 ImageNet-1k classes)
ships with the package (``keras_hiri/data/imagenet_class_index.json``, built
from timm's ImageNet synset/lemma tables, Apache-2.0), so nothing is downloaded.
"""

import functools
import json
import os

import numpy as np

from keras_hiri.builder import IMAGENET_MEAN, IMAGENET_STD

_INDEX_PATH = os.path.join(os.path.dirname(__file__), "data", "imagenet_class_index.json")
MODES = ("in_model", "torch")


@functools.lru_cache(maxsize=1)
def class_index():
    """``{index: (synset_id, name)}`` for the 1000 ImageNet-1k classes."""
    with open(_INDEX_PATH) as f:
        return {int(k): tuple(v) for k, v in json.load(f).items()}


def preprocess_input(x, data_format=None, mode="in_model"):
    """Prepares ``[0, 255]`` RGB images for a HIRI-ViT.

    Models built with ``include_preprocessing=True`` (the default) normalise
    inside the graph, so the default ``mode="in_model"`` only casts to float32
    (as ``keras.applications.convnext.preprocess_input`` is a no-op).
    ``mode="torch"`` scales to ``[0, 1]`` and normalises with the ImageNet
    mean/std, for models built with ``include_preprocessing=False``.
    """
    if data_format not in (None, "channels_last"):
        raise ValueError(f"Only channels_last is supported. Received: data_format={data_format!r}")
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}. Received: mode={mode!r}")
    x = np.asarray(x, dtype="float32")
    if x.shape[-1:] != (3,):
        raise ValueError(f"Expected RGB images (..., 3). Received shape {x.shape}")
    if mode == "torch":
        x = (x / 255.0 - np.array(IMAGENET_MEAN, "float32")) / np.array(IMAGENET_STD, "float32")
    return x


def decode_predictions(preds, top=5):
    """Top-``top`` ``(synset_id, name, score)`` tuples per row of ``preds``.

    Args:
        preds: ``(batch, 1000)`` array of scores (probabilities or logits).
        top: how many classes per image.
    """
    preds = np.asarray(preds)
    if preds.ndim != 2 or preds.shape[1] != 1000:
        raise ValueError(
            "decode_predictions expects a batch of ImageNet-1k predictions, shape "
            f"(samples, 1000). Received shape {preds.shape}"
        )
    if not 1 <= top <= 1000:
        raise ValueError(f"top must be in [1, 1000]. Received: top={top}")
    index = class_index()
    results = []
    for row in preds:
        best = np.argsort(row)[::-1][:top]
        results.append([(*index[int(i)], float(row[i])) for i in best])
    return results
