"""The paper's training augmentation (Sec. 5.1) and eval transform, for tf.data:
the pipeline of streaming sources (class-folder directories, tfds). In-memory
arrays use :class:`keras_hiri.KeyedImageDataset` instead (keyed, exactly
resumable, no TensorFlow).

Sec. 5.1 follows Swin / PVTv2 (i.e. DeiT's recipe): random resized crop,
horizontal flip, RandAugment, Random Erasing, CutMix, MixUp and label
smoothing. The pipeline runs in ``tf.data`` whatever the Keras backend is, so the
same input pipeline feeds TensorFlow, JAX and PyTorch models.

Keras core's augmentation layers (``RandAugment`` with a per-image
equalization, see :mod:`keras_hiri.training.randaugment`; ``RandomFlip``,
``RandomErasing``: KerasCV's successors, Keras >= 3.9) are used, not keras-cv: keras-cv is frozen since 2024 and its layers are written for
the TensorFlow backend, while the core layers switch to TensorFlow ops inside
``tf.data`` on every backend. Keras has no random-resized-crop layer, so that one
is ``tf.image.sample_distorted_bounding_box`` + resize (data code, not model code).
CutMix/MixUp and label smoothing happen inside the trainer's step
(:mod:`keras_hiri.training.mixing`), where the teacher sees the un-mixed images.
"""

import keras

from keras_hiri import extras
from keras_hiri.training.pipeline import check_augmentations
from keras_hiri.training.randaugment import recipe_randaugment
from keras_hiri.training.recipe import DEFAULTS

tf = extras.require_tensorflow("keras_hiri.training.augmentation (the tf.data pipeline)")


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
    """Batch-level augmentation: flip, RandAugment, Random Erasing (Keras core),
    then any ``augmentations`` (see :func:`train_pipeline`).

    Call it on a batch of ``[0, 255]`` float images inside ``tf.data``.
    """

    def __init__(
        self, randaugment=True, erasing_prob=DEFAULTS["erasing_prob"], flip=True, seed=None,
        augmentations=(),
    ):
        self.augmentations = check_augmentations(augmentations)
        layers = [keras.layers.RandomFlip("horizontal", seed=seed)] if flip else []
        if randaugment:
            layers.append(recipe_randaugment(seed))
        if erasing_prob > 0:
            layers.append(
                keras.layers.RandomErasing(factor=erasing_prob, value_range=(0, 255), seed=seed)
            )
        self.pipeline = keras.layers.Pipeline(layers)

    def __call__(self, images):
        images = self.pipeline(images, training=True)
        for layer in self.augmentations:
            images = layer(images, training=True)
        return images


def train_pipeline(
    dataset,
    image_size,
    batch_size,
    *,
    randaugment=True,
    erasing_prob=DEFAULTS["erasing_prob"],
    shuffle_buffer=1024,
    seed=None,
    augmentations=(),
):
    """``(image, label)`` dataset -> batched, augmented training dataset.

    Labels stay integers: CutMix/MixUp and label smoothing happen in the
    trainer's step (:mod:`keras_hiri.training.mixing`), where the teacher sees the
    un-mixed images.

    Args:
        dataset: unbatched ``tf.data.Dataset`` of ``(uint8 image, int label)``.
        image_size: ``(H, W)`` of the model input.
        augmentations: extra image-augmentation layers (Keras core or
            keras-cv, e.g. ``keras_cv.layers.GridMask()``), applied in order to
            each batch of ``[0, 255]`` float images after the recipe's
            flip / RandAugment / Random Erasing, inside ``tf.data``.
    """
    image_size = tuple(image_size)
    ds = dataset.shuffle(shuffle_buffer, seed=seed) if shuffle_buffer else dataset
    ds = ds.map(
        lambda x, y: (random_resized_crop(x, image_size, seed=seed), y),
        num_parallel_calls=tf.data.AUTOTUNE,
    )
    ds = ds.batch(batch_size, drop_remainder=True)
    augment = TrainAugment(randaugment=randaugment, erasing_prob=erasing_prob, seed=seed,
                           augmentations=augmentations)
    ds = ds.map(lambda x, y: (augment(x), y), num_parallel_calls=tf.data.AUTOTUNE)
    return ds.prefetch(tf.data.AUTOTUNE)


def eval_pipeline(dataset, image_size, batch_size, crop_pct=DEFAULTS["crop_pct"]):
    """``(image, label)`` dataset -> resized, center-cropped, batched dataset."""
    ds = dataset.map(
        lambda x, y: (eval_transform(x, image_size, crop_pct), y),
        num_parallel_calls=tf.data.AUTOTUNE,
    )
    return ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)
