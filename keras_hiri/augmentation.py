"""The paper's training augmentation (Sec. 5.1) and eval transform, for tf.data.

Sec. 5.1 follows Swin / PVTv2 (i.e. DeiT's recipe): random resized crop,
horizontal flip, RandAugment, Random Erasing, CutMix, MixUp and label
smoothing. The pipeline runs in ``tf.data`` whatever the Keras backend is, so the
same input pipeline feeds TensorFlow, JAX and PyTorch models.

Keras core's augmentation layers (``RandAugment``, ``RandomFlip``,
``RandomErasing``: KerasCV's successors, Keras >= 3.9) are used, not keras-cv: keras-cv is frozen since 2024 and its layers are written for
the TensorFlow backend, while the core layers switch to TensorFlow ops inside
``tf.data`` on every backend. Keras has no random-resized-crop layer, so that one
is ``tf.image.sample_distorted_bounding_box`` + resize (data code, not model code),
and CutMix/MixUp are written with TF ops (see :class:`MixLabels`).

With :class:`~keras_hiri.EMADistillation`, CutMix/MixUp and label smoothing
happen inside the training step (the teacher needs the un-mixed images), so
build the training set with ``mix=False``.
"""

import keras

from keras_hiri import extras
from keras_hiri.recipe import DEFAULTS

tf = extras.require_tensorflow("keras_hiri.augmentation (the tf.data pipeline)")



def random_resized_crop(
    image, size, scale=DEFAULTS["scale"], ratio=DEFAULTS["ratio"], seed=None, key=None
):
    """Inception-style crop of ``scale`` of the area and ``ratio`` aspect, resized
    to ``size`` (one image, ``(H, W, 3)``, any size).

    With ``key`` (an int64 ``[2]`` tensor) the crop is a pure function of it
    (``tf.image.stateless_sample_distorted_bounding_box``); otherwise it draws
    from TensorFlow's stateful generator with op seed ``seed``.
    """
    size = tuple(size)
    box_args = dict(
        bounding_boxes=tf.zeros((1, 0, 4)),
        area_range=scale,
        aspect_ratio_range=ratio,
        max_attempts=10,
        use_image_if_no_bounding_boxes=True,
    )
    if key is not None:
        begin, crop_size, _ = tf.image.stateless_sample_distorted_bounding_box(
            tf.shape(image), seed=key, **box_args
        )
    else:
        begin, crop_size, _ = tf.image.sample_distorted_bounding_box(
            tf.shape(image), seed=seed or 0, **box_args
        )
    crop = tf.slice(image, begin, crop_size)
    out = tf.image.resize(tf.cast(crop, tf.float32), size, method="bilinear", antialias=True)
    out.set_shape((*size, image.shape[-1]))  # tf.slice loses the static channel count
    return out


def eval_transform(image, size, crop_pct=DEFAULTS["crop_pct"]):
    """Resize the shorter side to ``size / crop_pct`` and center-crop ``size``."""
    size = tuple(size)
    image = tf.cast(image, tf.float32)
    shape = tf.cast(tf.shape(image)[:2], tf.float32)
    target = tf.cast(max(size), tf.float32) / crop_pct
    scale = target / tf.reduce_min(shape)
    new = tf.cast(tf.round(shape * scale), tf.int32)
    image = tf.image.resize(image, new, method="bilinear", antialias=True)
    return tf.image.resize_with_crop_or_pad(image, size[0], size[1])


class TrainAugment:
    """Batch-level augmentation: flip, RandAugment, Random Erasing (Keras core).

    Call it on a batch of ``[0, 255]`` float images inside ``tf.data``.
    """

    def __init__(
        self, randaugment=True, erasing_prob=DEFAULTS["erasing_prob"], flip=True, seed=None
    ):
        layers = [keras.layers.RandomFlip("horizontal", seed=seed)] if flip else []
        if randaugment:
            layers.append(
                keras.layers.RandAugment(
                    value_range=(0, 255),
                    num_ops=DEFAULTS["randaugment_ops"],
                    factor=DEFAULTS["randaugment_factor"],
                    seed=seed,
                )
            )
        if erasing_prob > 0:
            layers.append(
                keras.layers.RandomErasing(factor=erasing_prob, value_range=(0, 255), seed=seed)
            )
        self.pipeline = keras.layers.Pipeline(layers)

    def __call__(self, images):
        return self.pipeline(images, training=True)


class MixLabels:
    """Label smoothing, then CutMix or MixUp (probability ``switch_prob``), per batch.

    For plain (non-distillation) training. Takes ``(images, int labels)``,
    returns ``(images, soft labels)``; sample ``i`` is mixed with sample
    ``B-1-i`` (the same pairing as :class:`~keras_hiri.EMADistillation`).

    Written with TensorFlow ops rather than Keras' ``CutMix``/``MixUp`` layers:
    inside ``tf.data``, Keras 3.15's ``CutMix`` returns label weights that differ
    from the pasted area by up to 0.091 (``benchmarks/keras_cutmix_check.py``;
    ``tests/test_augmentation.py`` checks ours on every backend).
    """

    def __init__(
        self,
        num_classes,
        mixup_alpha=DEFAULTS["mixup_alpha"],
        cutmix_alpha=DEFAULTS["cutmix_alpha"],
        switch_prob=DEFAULTS["switch_prob"],
        label_smoothing=DEFAULTS["label_smoothing"],
        seed=None,
    ):
        self.num_classes = num_classes
        self.mixup_alpha = mixup_alpha
        self.cutmix_alpha = cutmix_alpha
        self.switch_prob = switch_prob
        self.label_smoothing = label_smoothing
        self.seed = seed

    def _op_seed(self, offset):
        # TF ops that share an op seed draw the same stream: give each its own.
        return None if self.seed is None else self.seed + offset

    def _beta(self, alpha, offset):
        a = tf.random.gamma((), alpha, seed=self._op_seed(offset))
        b = tf.random.gamma((), alpha, seed=self._op_seed(offset + 1))
        return a / (a + b)

    def __call__(self, images, labels):
        y = tf.one_hot(tf.cast(tf.reshape(labels, [-1]), tf.int32), self.num_classes)
        y = y * (1.0 - self.label_smoothing) + self.label_smoothing / self.num_classes
        images = tf.cast(images, tf.float32)
        if self.mixup_alpha <= 0 and self.cutmix_alpha <= 0:
            return images, y
        if self.mixup_alpha > 0 and self.cutmix_alpha > 0:
            cutmix = tf.random.uniform((), seed=self._op_seed(0)) < self.switch_prob
        else:
            cutmix = tf.constant(self.cutmix_alpha > 0)
        shape = tf.shape(images)
        h, w = tf.cast(shape[1], tf.float32), tf.cast(shape[2], tf.float32)
        lam_cut = self._beta(self.cutmix_alpha, 3) if self.cutmix_alpha > 0 else tf.constant(1.0)
        cut = tf.sqrt(1.0 - lam_cut)
        cut_h, cut_w = tf.floor(h * cut), tf.floor(w * cut)
        cy = tf.floor(tf.random.uniform((), 0.0, h, seed=self._op_seed(1)))
        cx = tf.floor(tf.random.uniform((), 0.0, w, seed=self._op_seed(2)))
        y1, y2 = tf.clip_by_value(cy - tf.floor(cut_h / 2), 0, h), tf.clip_by_value(cy + tf.floor(cut_h / 2), 0, h)
        x1, x2 = tf.clip_by_value(cx - tf.floor(cut_w / 2), 0, w), tf.clip_by_value(cx + tf.floor(cut_w / 2), 0, w)
        rows = tf.range(h)[:, None]
        cols = tf.range(w)[None, :]
        inside = (rows >= y1) & (rows < y2) & (cols >= x1) & (cols < x2)
        box_mask = 1.0 - tf.cast(inside, tf.float32)[None, :, :, None]
        lam_box = 1.0 - (y2 - y1) * (x2 - x1) / (h * w)
        lam_mix = self._beta(self.mixup_alpha, 5) if self.mixup_alpha > 0 else tf.constant(1.0)
        lam = tf.where(cutmix, lam_box, lam_mix)
        mask = tf.where(cutmix, box_mask, tf.reshape(lam_mix, (1, 1, 1, 1)))
        mixed = mask * images + (1.0 - mask) * tf.reverse(images, axis=[0])
        return mixed, lam * y + (1.0 - lam) * tf.reverse(y, axis=[0])


def train_pipeline(
    dataset,
    image_size,
    batch_size,
    num_classes=None,
    *,
    mix=True,
    randaugment=True,
    erasing_prob=DEFAULTS["erasing_prob"],
    shuffle_buffer=1024,
    seed=None,
):
    """``(image, label)`` dataset -> batched, augmented training dataset.

    Args:
        dataset: unbatched ``tf.data.Dataset`` of ``(uint8 image, int label)``.
        image_size: ``(H, W)`` of the model input.
        mix: add label smoothing + CutMix/MixUp (needs ``num_classes``); leave
            ``False`` for EMADistillation, which mixes inside its training step.
    """
    image_size = tuple(image_size)
    if mix and not num_classes:
        raise ValueError("train_pipeline(mix=True) needs num_classes.")
    ds = dataset.shuffle(shuffle_buffer, seed=seed) if shuffle_buffer else dataset
    ds = ds.map(
        lambda x, y: (random_resized_crop(x, image_size, seed=seed), y),
        num_parallel_calls=tf.data.AUTOTUNE,
    )
    ds = ds.batch(batch_size, drop_remainder=True)
    augment = TrainAugment(randaugment=randaugment, erasing_prob=erasing_prob, seed=seed)
    ds = ds.map(lambda x, y: (augment(x), y), num_parallel_calls=tf.data.AUTOTUNE)
    if mix:
        mixer = MixLabels(num_classes, seed=seed)
        ds = ds.map(mixer, num_parallel_calls=tf.data.AUTOTUNE)
    return ds.prefetch(tf.data.AUTOTUNE)


def eval_pipeline(dataset, image_size, batch_size, crop_pct=DEFAULTS["crop_pct"]):
    """``(image, label)`` dataset -> resized, center-cropped, batched dataset."""
    ds = dataset.map(
        lambda x, y: (eval_transform(x, image_size, crop_pct), y),
        num_parallel_calls=tf.data.AUTOTUNE,
    )
    return ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)
