"""CutMix / MixUp and label smoothing as pure functions (``keras.ops``).

One implementation for every use: :class:`~keras_hiri.EMADistillation` (and so
plain training, its ``alpha=1`` case) calls them inside the training step on
any backend. Sample ``i`` of a batch is mixed with sample ``B-1-i`` (the batch
flipped, a permutation of itself). A draw is a dict:

* ``cutmix``: whether this batch uses CutMix (else MixUp);
* ``lam``: the weight of sample ``i``'s own label; for CutMix, exactly the
  share of its own pixels (the box is clipped at the border first);
* ``box``: ``(y1, y2, x1, x2)`` in pixels, where CutMix pastes the partner.

Keras core's ``CutMix`` layer weighs labels by the unclipped box inside
``tf.data``, up to 0.09 away from the pasted area
(``python benchmarks/keras_cutmix_check.py``), hence these functions.
"""

import keras
from keras import ops


def _beta(alpha, seed):
    if alpha <= 0:
        return ops.convert_to_tensor(1.0)
    return keras.random.beta((), alpha, alpha, seed=seed)


def sample(image_shape, seed, mixup_alpha=0.8, cutmix_alpha=1.0, switch_prob=0.5):
    """Draws one batch's mixing for ``image_shape = (height, width)``.

    ``seed`` is a ``keras.random.SeedGenerator`` (its state decides the draw).
    """
    h, w = image_shape
    if cutmix_alpha > 0 and mixup_alpha > 0:
        cutmix = keras.random.uniform((), seed=seed) < switch_prob
    else:
        cutmix = ops.convert_to_tensor(cutmix_alpha > 0)
    lam_mix = _beta(mixup_alpha, seed)
    cut = ops.sqrt(1.0 - _beta(cutmix_alpha, seed))
    cut_h, cut_w = ops.floor(h * cut), ops.floor(w * cut)
    cy = ops.floor(keras.random.uniform((), 0, h, seed=seed))
    cx = ops.floor(keras.random.uniform((), 0, w, seed=seed))
    y1 = ops.clip(cy - ops.floor(cut_h / 2), 0, h)
    y2 = ops.clip(cy + ops.floor(cut_h / 2), 0, h)
    x1 = ops.clip(cx - ops.floor(cut_w / 2), 0, w)
    x2 = ops.clip(cx + ops.floor(cut_w / 2), 0, w)
    lam_box = 1.0 - (y2 - y1) * (x2 - x1) / float(h * w)
    return {
        "cutmix": cutmix,
        "lam": ops.where(cutmix, lam_box, lam_mix),
        "box": ops.stack([y1, y2, x1, x2]),
    }


def mask(mix, image_shape, height, width):
    """``(1, height, width, 1)`` weight of sample ``i`` against its partner.

    CutMix: the fraction of each cell of a ``height x width`` grid outside the
    box (pixels on the image grid, area-averaged on coarser grids such as a
    stage-5 map); MixUp: ``lam`` everywhere. Its mean is ``lam`` on any grid.
    """
    h, w = image_shape
    y1, y2, x1, x2 = (mix["box"][i] for i in range(4))

    def overlap(lo, hi, n, size):
        scale = n / size
        edges = ops.arange(n, dtype="float32")
        return ops.clip(ops.minimum(hi * scale, edges + 1) - ops.maximum(lo * scale, edges), 0, 1)

    inside = overlap(y1, y2, height, h)[:, None] * overlap(x1, x2, width, w)[None, :]
    cut_mask = (1.0 - inside)[None, :, :, None]
    return ops.where(mix["cutmix"], cut_mask, ops.reshape(mix["lam"], (1, 1, 1, 1)))


def mix_images(x, mix):
    """``(B, H, W, C)`` images mixed with their flipped partners."""
    weights = ops.cast(mask(mix, x.shape[1:3], x.shape[1], x.shape[2]), x.dtype)
    return weights * x + (1.0 - weights) * ops.flip(x, axis=0)


def one_hot(y, num_classes):
    """``y`` as float32 one-hot rows: integer labels (shape ``(B,)`` or
    ``(B, 1)``) are encoded, rows of ``num_classes`` values pass through."""
    y = ops.convert_to_tensor(y)
    if len(y.shape) == 1 or y.shape[-1] == 1 and num_classes > 1:
        y = ops.one_hot(ops.cast(ops.reshape(y, (-1,)), "int32"), num_classes)
    return ops.cast(y, "float32")


def smooth(y, label_smoothing):
    """Label smoothing of one-hot (or soft) ``(B, K)`` labels."""
    return y * (1.0 - label_smoothing) + label_smoothing / y.shape[-1]


def mix_labels(y, mix):
    """``(B, K)`` labels mixed with their flipped partners by ``lam``."""
    return mix["lam"] * y + (1.0 - mix["lam"]) * ops.flip(y, axis=0)


def mix_maps(maps, mix, image_shape):
    """``(B, h, w, K)`` per-position class maps mixed with the mask reduced to
    their grid, then average-pooled: the teacher's ``y_hat``."""
    weights = mask(mix, image_shape, maps.shape[1], maps.shape[2])
    mixed = weights * maps + (1.0 - weights) * ops.flip(maps, axis=0)
    return ops.mean(mixed, axis=(1, 2))
