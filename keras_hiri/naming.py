"""The one owner of HIRI-ViT's top-level layer names.

The builder names layers with these functions; every other module (profiler,
converter, distillation, weights) reads names back through :func:`parse` or
the model's accessors, never by its own pattern. Stages count from 1.

==========================  =============================================
name                        layer
==========================  =============================================
``to_channels_last``        channels_first input -> the channels-last layout
                            every layer computes in
``preprocessing``           ImageNet normalisation (in-model)
``stem``                    the stem
``stage{i}_downsample``     downsampling in front of stage ``i`` (i >= 2)
``stage{i}_resize``         the pinned-grid resize (``pin_late_grids``)
``stage{i}_block{j}``       block ``j`` of stage ``i``
``stage{i}_norm``           the norm that ends stage ``i`` (its output is a
                            pyramid level)
``head``                    the class-attention head
``head_norm``               the classifier's LayerNorm
``predictions``             the classifier (``Dense``)
``predictions_activation``  its activation, when there is one
``avg_pool`` / ``max_pool`` ``pooling=`` of a backbone
``to_channels_first``       a channels_first backbone's 4-D output
==========================  =============================================
"""

import re

TO_CHANNELS_LAST = "to_channels_last"
TO_CHANNELS_FIRST = "to_channels_first"
PREPROCESSING = "preprocessing"
STEM = "stem"
HEAD = "head"
HEAD_NORM = "head_norm"
CLASSIFIER = "predictions"
CLASSIFIER_ACTIVATION = "predictions_activation"
POOLING = {"avg": "avg_pool", "max": "max_pool"}

_STAGE = re.compile(r"^stage(\d+)_(downsample|resize|norm|block(\d+))$")


def downsample(stage):
    return f"stage{stage}_downsample"


def resize(stage):
    return f"stage{stage}_resize"


def block(stage, index):
    return f"stage{stage}_block{index}"


def stage_norm(stage):
    return f"stage{stage}_norm"


def parse(name):
    """``(kind, stage, block)`` of a top-level layer name.

    ``kind`` is one of ``"layout"``, ``"preprocessing"``, ``"stem"``, ``"downsample"``,
    ``"resize"``, ``"block"``, ``"norm"``, ``"head"`` (the head, its norm, the
    classifier and its activation), ``"pooling"`` or ``None`` (not ours);
    ``stage`` and ``block`` are ints or ``None``.
    """
    match = _STAGE.match(name)
    if match:
        kind = "block" if match.group(3) else match.group(2)
        return kind, int(match.group(1)), int(match.group(3)) if match.group(3) else None
    if name in (HEAD, HEAD_NORM, CLASSIFIER, CLASSIFIER_ACTIVATION):
        return "head", None, None
    if name in POOLING.values():
        return "pooling", None, None
    if name in (TO_CHANNELS_LAST, TO_CHANNELS_FIRST):
        return "layout", None, None
    if name in (PREPROCESSING, STEM):
        return name, None, None
    return None, None, None
