"""In-memory training / evaluation batches whose every random draw is keyed.

:class:`KeyedImageDataset` is a ``keras.utils.PyDataset``: it needs no
TensorFlow and feeds ``fit`` on every backend. Each batch is a pure function of
``(seed, epoch, batch index)``:

* the sample order of an epoch: a permutation keyed by ``(seed, epoch)``;
* the random-resized crop and horizontal flip of a sample: drawn by NumPy from
  ``(seed, epoch, sample index)`` and applied as one affine resampling at the
  source resolution, then an antialiased resize (``keras.ops.image``);
* RandAugment (:func:`keras_hiri.training.randaugment.recipe_randaugment`: Keras core's,
  with a per-image equalization) and Random Erasing (Keras core), run eagerly on
  the Keras backend: the state of each layer's ``generator`` is set from the batch key,
  then the layer draws its parameters (``get_random_transformation``) and
  applies them (``transform_images``).

So a run killed at any point and resumed from its last finished epoch (which
is what ``keras.callbacks.BackupAndRestore`` restores) draws exactly what the
uninterrupted run drew, with the recipe's default augmentation on. The epoch is
set by the :class:`EpochCounter` callback that :func:`keras_hiri.train` adds;
call ``fit(..., shuffle=False)`` (the order is already keyed).
"""

import math
import random

import keras
import numpy as np
from keras import ops

from keras_hiri import checks
from keras_hiri.training.randaugment import recipe_randaugment
from keras_hiri.training.recipe import DEFAULTS

# Each batch may draw up to this many seeds from a layer's generator before the
# keys of two batches could meet (RandAugment draws about 30).
_DRAWS_PER_BATCH = 1024


class EpochCounter(keras.callbacks.Callback):
    """Tells keyed datasets (anything with ``set_epoch``) the epoch ``fit`` is in."""

    def __init__(self, *datasets):
        super().__init__()
        self.datasets = datasets

    def on_epoch_begin(self, epoch, logs=None):
        for dataset in self.datasets:
            dataset.set_epoch(epoch)


def inception_crop_box(rng, height, width, scale=DEFAULTS["scale"], ratio=DEFAULTS["ratio"]):
    """``(top, left, h, w)`` of an Inception-style random crop: ``scale`` of the
    area, log-uniform aspect ``ratio``; ten tries, then the central crop with the
    aspect clamped into ``ratio`` (torchvision's ``RandomResizedCrop`` rule)."""
    area = height * width
    log_ratio = np.log(ratio)
    for _ in range(10):
        target = area * rng.uniform(*scale)
        aspect = math.exp(rng.uniform(*log_ratio))
        w = int(round(math.sqrt(target * aspect)))
        h = int(round(math.sqrt(target / aspect)))
        if 0 < w <= width and 0 < h <= height:
            return int(rng.integers(0, height - h + 1)), int(rng.integers(0, width - w + 1)), h, w
    aspect = width / height
    if aspect < min(ratio):
        w, h = width, int(round(width / min(ratio)))
    elif aspect > max(ratio):
        h, w = height, int(round(height * max(ratio)))
    else:
        h, w = height, width
    return (height - h) // 2, (width - w) // 2, h, w


def center_crop_box(height, width, crop_pct=DEFAULTS["crop_pct"], aspect=1.0):
    """The evaluation view: the central ``crop_pct`` of the shorter side (the
    region that "resize the shorter side to size / crop_pct, center-crop size"
    keeps), with the output's aspect ``aspect = out_w / out_h``."""
    side = min(height, width) * crop_pct
    h, w = (side, side * aspect) if aspect <= 1 else (side / aspect, side)
    return (height - h) / 2, (width - w) / 2, h, w


def _affine_row(box, height, width, flip):
    """The ``affine_transform`` row that maps the full output grid onto ``box``."""
    top, left, h, w = box
    sy, sx = h / height, w / width
    if flip:
        return [-sx, 0.0, left + (width - 0.5) * sx - 0.5, 0.0, sy, top + 0.5 * sy - 0.5, 0.0, 0.0]
    return [sx, 0.0, left + 0.5 * sx - 0.5, 0.0, sy, top + 0.5 * sy - 0.5, 0.0, 0.0]


def crop_and_resize(images, boxes, flips, size):
    """Resamples each image's ``box`` (flipped where ``flips``) to ``size``.

    ``images`` is a ``(B, H, W, C)`` batch; the crop is an affine resampling at
    the source resolution (bilinear, edges repeated), followed by an antialiased
    bilinear resize, so a large crop shrinks without aliasing.
    """
    height, width = images.shape[1:3]
    transform = np.array(
        [_affine_row(b, height, width, f) for b, f in zip(boxes, flips)], "float32"
    )
    x = ops.image.affine_transform(
        ops.cast(images, "float32"), transform, interpolation="bilinear", fill_mode="nearest",
        data_format="channels_last",
    )
    if tuple(size) != (height, width):
        x = ops.image.resize(x, size, interpolation="bilinear", antialias=True,
                             data_format="channels_last")
    return x


def is_keyable(layer):
    """Whether ``layer`` has Keras core's image-augmentation API (a seed
    ``generator``, ``get_random_transformation``, ``transform_images``), which
    lets :class:`KeyedImageDataset` key its draws."""
    return all(hasattr(layer, name) for name in
               ("generator", "get_random_transformation", "transform_images"))


def check_augmentations(augmentations, keyed=False):
    """``augmentations`` (a layer or a sequence of layers) as a tuple, checked:
    each must be a ``keras.layers.Layer`` (Keras core and keras-cv layers are);
    with ``keyed``, each must also have Keras core's augmentation API."""
    if augmentations is None:
        return ()
    if isinstance(augmentations, keras.layers.Layer):
        augmentations = (augmentations,)
    augmentations = tuple(augmentations)
    for layer in augmentations:
        if not isinstance(layer, keras.layers.Layer):
            raise ValueError(
                "augmentations must be Keras layers (Keras core or keras-cv image "
                f"augmentation layers). Received: {layer!r}"
            )
        if keyed and not is_keyable(layer):
            raise ValueError(
                f"KeyedImageDataset keys every random draw (so a resumed run repeats "
                f"the uninterrupted one) and takes only layers with Keras core's "
                f"augmentation API, e.g. keras.layers.RandomContrast. Received: "
                f"{type(layer).__module__}.{type(layer).__name__}. Pass it to "
                f"keras_hiri.training.augmentation.train_pipeline (tf.data) instead."
            )
    return augmentations


class KeyedImageDataset(keras.utils.PyDataset):
    """Batches of ``(float32 image in [0, 255], int label)`` from arrays.

    Args:
        images: ``uint8`` (or float) ``(N, H, W, 3)`` array, all one size.
        labels: ``int`` ``(N,)`` array.
        image_size: ``(height, width)`` of the model input.
        batch_size: samples per batch (training drops the last partial batch).
        train: random crop/flip/RandAugment/Erasing and a keyed order if
            ``True``; the central ``crop_pct`` view in order otherwise.
        randaugment: apply the recipe's RandAugment (training).
        erasing_prob: ``keras.layers.RandomErasing`` factor; 0 disables it.
        augmentations: extra Keras core image-augmentation layers (e.g.
            ``keras.layers.RandomContrast(0.2)``), applied in order after the
            recipe's, keyed like them (training only). Layers without Keras
            core's augmentation API (keras-cv's) go to
            :func:`keras_hiri.training.augmentation.train_pipeline`.
        flip: random horizontal flips (training).
        seed: the run's seed; every draw is a function of it. ``None``
            picks one at random (Python's ``random``).
        **kwargs: ``keras.utils.PyDataset`` arguments. Keep ``workers=1``
            unless the backend's ops are thread-safe for you.
    """

    def __init__(
        self, images, labels, image_size, batch_size, train=True, *,
        randaugment=True, erasing_prob=DEFAULTS["erasing_prob"], flip=True,
        crop_pct=DEFAULTS["crop_pct"], seed=0, augmentations=(), **kwargs,
    ):
        super().__init__(**kwargs)
        augmentations = check_augmentations(augmentations, keyed=True)
        images, labels = np.asarray(images), np.asarray(labels).reshape(-1)
        if images.ndim != 4 or len(images) != len(labels):
            raise ValueError(
                "images must be (N, H, W, C) with one label each. Received: "
                f"images.shape={images.shape}, labels.shape={labels.shape}"
            )
        if batch_size < 1 or (train and batch_size > len(labels)):
            raise ValueError(
                f"batch_size must be in [1, {len(labels)}] (the set's size). "
                f"Received: batch_size={batch_size}"
            )
        lowest = labels.min() if labels.size else 0
        if not np.issubdtype(labels.dtype, np.integer) or lowest < 0:
            raise ValueError("labels must be non-negative ints (class indices). "
                             f"Received dtype {labels.dtype}, min {lowest}")
        if not isinstance(image_size, (tuple, list)) or len(image_size) != 2:
            raise ValueError(f"image_size must be (height, width). Received: image_size={image_size!r}")
        for name, side in zip(("height", "width"), image_size):
            checks.int_at_least(f"image_size's {name}", side)
        checks.number_in("erasing_prob", erasing_prob, 0, 1)
        checks.number_in("crop_pct", crop_pct, 0, 1, low_open=True)
        self.images, self.labels = images, labels.astype("int32")
        self.image_size = tuple(int(s) for s in image_size)
        self.batch_size = int(batch_size)
        self.train = bool(train)
        self.flip = bool(flip)
        self.crop_pct = float(crop_pct)
        self.seed = random.randint(0, 2**30) if seed is None else int(seed)
        self.epoch = 0
        self.augmenters = []
        if train and randaugment:
            self.augmenters.append(recipe_randaugment(self.seed))
        if train and erasing_prob > 0:
            self.augmenters.append(keras.layers.RandomErasing(
                factor=erasing_prob, value_range=(0, 255), seed=self.seed,
            ))
        if train:
            self.augmenters.extend(augmentations)

    def set_epoch(self, epoch):
        self.epoch = int(epoch)

    def __len__(self):
        if self.train:
            return len(self.labels) // self.batch_size
        return math.ceil(len(self.labels) / self.batch_size)

    def order(self, epoch):
        """The sample order of ``epoch`` (identity for evaluation)."""
        if not self.train:
            return np.arange(len(self.labels))
        return np.random.default_rng((self.seed, epoch)).permutation(len(self.labels))

    def __getitem__(self, index):
        if not 0 <= index < len(self):
            raise IndexError(f"batch index {index} out of range [0, {len(self)})")
        start = index * self.batch_size
        ids = self.order(self.epoch)[start:start + self.batch_size]
        height, width = self.images.shape[1:3]
        if self.train:
            rngs = [np.random.default_rng((self.seed, self.epoch, int(i))) for i in ids]
            boxes = [inception_crop_box(rng, height, width) for rng in rngs]
            flips = [self.flip and rng.uniform() < 0.5 for rng in rngs]
        else:
            aspect = self.image_size[1] / self.image_size[0]
            boxes = [center_crop_box(height, width, self.crop_pct, aspect)] * len(ids)
            flips = [False] * len(ids)
        x = crop_and_resize(self.images[ids], boxes, flips, self.image_size)
        for i, layer in enumerate(self.augmenters):
            # Run eagerly on the Keras backend, the layers draw from their own
            # ``generator`` (RandAugment ignores a ``seed`` argument): key it.
            state = layer.generator.state
            key = [(self.seed * 1_000_003 + self.epoch * 31 + i) % (2**31), index * _DRAWS_PER_BATCH]
            state.assign(ops.convert_to_tensor(np.array(key), dtype=state.dtype))
            transformation = layer.get_random_transformation(x, training=True)
            x = layer.transform_images(x, transformation, training=True)
        return ops.convert_to_numpy(ops.cast(x, "float32")), self.labels[ids]
