"""Training data sources: a directory of class folders, tensorflow-datasets
builders with data already on disk, and a small real-photo set that ships
offline (for demos, tests and the distillation benchmark).

Nothing here downloads anything: a tfds dataset must be prepared already or be
built from manual files (ImageNet's tars in ``manual_dir``), and the photo set
is cut from the photographs that scikit-image installs with itself.
"""

import os

import numpy as np

from keras_hiri import checks, extras

tf = extras.require_tensorflow("keras_hiri.training.data (tf.data sources and the photo-patch set)")

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif")


def image_folder(directory, load_size=None, shuffle=True, seed=None):
    """Unbatched ``(uint8 image, int label)`` dataset from ``directory/<class>/*``.

    Built on ``keras.utils.image_dataset_from_directory`` (classes sorted by
    name, as Keras does). ``load_size`` resizes on load (keeping the aspect by
    center-cropping) so images of different sizes can be batched later; the
    random-resized crop of the training pipeline then runs on it.

    Returns:
        ``(dataset, class_names)``.
    """
    import keras

    if not os.path.isdir(directory):
        raise ValueError(f"Training data directory not found: {directory!r}")
    classes = sorted(
        d for d in os.listdir(directory) if os.path.isdir(os.path.join(directory, d))
    )
    if not classes:
        raise ValueError(
            f"{directory!r} has no class sub-folders; expected directory/<class_name>/<image>."
        )
    ds = keras.utils.image_dataset_from_directory(
        directory,
        labels="inferred",
        label_mode="int",
        class_names=classes,
        image_size=tuple(load_size) if load_size else (256, 256),
        crop_to_aspect_ratio=True,
        batch_size=None,
        shuffle=shuffle,
        seed=seed,
        verbose=False,
    )
    ds = ds.map(lambda x, y: (tf.cast(tf.clip_by_value(tf.round(x), 0, 255), tf.uint8), y))
    return ds, classes


def tfds_dataset(name, split, data_dir=None, manual_dir=None, missing_ok=False):
    """A tensorflow-datasets split as ``(image, label)``; never downloads.

    Args:
        name: a tfds dataset name, prepared already in ``data_dir`` or built
            from manual files (ImageNet, ``imagenet2012``: its ILSVRC tar files
            in ``manual_dir``, which is only read), or the root of a local image
            folder (``root/<split>/<class>/<image>``, read by
            ``tfds.folder_dataset.ImageFolder``; ``"validation"`` also finds
            ``val/``).
        split: ``"train"``, ``"validation"``...
        missing_ok: return ``None`` instead of raising when the split does not exist.

    Returns:
        ``(dataset, num_classes, num_examples)``.

    Raises:
        ImportError: tensorflow-datasets (or what it needs offline) is missing;
            the message names the extra.
        ValueError: the dataset is not prepared and has no manual files here.
    """
    tfds = extras.require("tensorflow_datasets", "Training from tfds", "train")
    # etils (tfds' resource loader) needs it on Python 3.11, and nothing installs it.
    extras.require("importlib_resources", "tensorflow-datasets", "train")
    if os.path.isdir(name):
        builder = tfds.folder_dataset.ImageFolder(name)
        what = f"image folder {name!r}"
        if split == "validation" and split not in builder.info.splits:
            split = "val" if "val" in builder.info.splits else split
    else:
        builder = _prepared_builder(tfds, name, data_dir, manual_dir)
        what = f"tfds dataset {name!r}"
    splits = builder.info.splits
    if split not in splits:
        if missing_ok:
            return None
        raise ValueError(f"{what} has no {split!r} split. Found: {sorted(splits)}")
    ds = builder.as_dataset(split=split, as_supervised=True, shuffle_files=True)
    return ds, builder.info.features["label"].num_classes, splits[split].num_examples


def _prepared_builder(tfds, name, data_dir, manual_dir):
    """The tfds builder ``name``, prepared from manual files if need be; never
    downloads."""
    builder = tfds.builder(name, data_dir=data_dir)
    if not builder.is_prepared():
        if not getattr(builder, "MANUAL_DOWNLOAD_INSTRUCTIONS", None):
            raise ValueError(
                f"tfds dataset {name!r} is not prepared in {builder.data_dir!r}, and "
                "keras_hiri never downloads. Prepare it once with tensorflow-datasets "
                "where there is network and pass its data_dir, or pass a local image "
                "folder root instead of a name."
            )
        if not manual_dir:
            raise ValueError(
                f"tfds dataset {name!r} is built from manual files (e.g. ImageNet's "
                "ILSVRC tars), and none were given: pass manual_dir (--manual-dir)."
            )
        # Downloads/extractions go under data_dir, never into manual_dir.
        config = tfds.download.DownloadConfig(manual_dir=manual_dir)
        try:
            builder.download_and_prepare(download_config=config)
        except ImportError:
            raise
        except Exception as e:
            raise ValueError(
                f"tfds could not build {name!r} from the manual files in {manual_dir!r} "
                f"({type(e).__name__}: {e})."
            ) from e
    return builder


# ------------------------------------------------------------------ photo set
# Real photographs that ship inside scikit-image (no download). One class per
# photograph; grayscale ones are repeated to RGB.
PHOTOS = (
    "astronaut", "brick", "camera", "chelsea", "coffee",
    "coins", "grass", "gravel", "hubble_deep_field", "rocket",
)


def _photo(name):
    from skimage import data as skdata

    image = getattr(skdata, name)()
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=-1)
    return np.ascontiguousarray(image[..., :3]).astype(np.uint8)


def _check_split(split, val_fraction, **counts):
    """Raises a ``ValueError`` naming a bad argument of the offline sets: the
    split, ``val_fraction`` (in ``(0, 1)``) or any of ``counts`` (positive ints)."""
    if split not in ("train", "validation"):
        raise ValueError(f"split must be 'train' or 'validation'. Received: {split!r}")
    checks.number_in("val_fraction", val_fraction, 0, 1, low_open=True, high_open=True)
    for name, value in counts.items():
        checks.int_at_least(name, value)


def _split_region(image, split, val_fraction):
    """The part of ``image`` a split may use: the left ``1 - val_fraction`` of
    its width for "train", the rest for "validation" (no shared pixels)."""
    cut = int(round(image.shape[1] * (1 - val_fraction)))
    return image[:, :cut] if split == "train" else image[:, cut:]


def photo_patches(split, patch_size=64, per_class=64, val_fraction=0.25, seed=0):
    """The offline "skimage photo patches" set: which of 10 photographs does a
    patch come from?

    Every class is one real photograph from ``skimage.data`` (``PHOTOS``). Train
    patches are cut from the left ``1 - val_fraction`` of each photo and
    validation patches from the right ``val_fraction``, so the two splits share no
    pixels. A patch is a random square of 1/8 to 1/2 of the region's height,
    resized to ``patch_size``.

    Returns:
        ``(images uint8 (N, patch_size, patch_size, 3), labels int (N,), class_names)``.
    """
    _check_split(split, val_fraction, patch_size=patch_size, per_class=per_class)
    rng = np.random.default_rng(seed + (0 if split == "train" else 1))
    images, labels = [], []
    for label, name in enumerate(PHOTOS):
        region = _split_region(_photo(name), split, val_fraction)
        rh, rw = region.shape[:2]
        for _ in range(per_class):
            side = int(rng.uniform(min(rh, rw) / 8, min(rh, rw) / 2))
            top = rng.integers(0, rh - side + 1)
            left = rng.integers(0, rw - side + 1)
            crop = region[top : top + side, left : left + side]
            images.append(
                tf.image.resize(crop, (patch_size, patch_size), antialias=True).numpy()
            )
            labels.append(label)
    images = np.clip(np.round(np.stack(images)), 0, 255).astype(np.uint8)
    return images, np.array(labels, dtype=np.int64), list(PHOTOS)


# Real textures that ship inside scikit-image (512 x 512 grayscale photographs).
TEXTURES = ("brick", "grass", "gravel")


def texture_mosaics(split, n=64, size=64, regions=(2, 6), val_fraction=0.25, seed=0):
    """The offline texture-mosaic segmentation set (as the classic Brodatz
    mosaic benchmarks): which texture is each pixel?

    Each image is a random Voronoi partition into ``regions`` cells, each cell
    filled with a random crop of one real texture from ``skimage.data``
    (``TEXTURES``; class ``i`` = ``TEXTURES[i]``), so every mask is exact.
    Train crops come from the left ``1 - val_fraction`` of each texture,
    validation crops from the right part (no shared pixels). Each texture is
    standardised to one mean and contrast, so only texture tells them apart.

    Returns:
        ``(images uint8 (n, size, size, 3), masks int32 (n, size, size), class_names)``.
    """
    _check_split(split, val_fraction, n=n, size=size)
    textures = []
    for name in TEXTURES:
        texture = _photo(name)[..., 0].astype(np.float32)
        texture = (texture - texture.mean()) / texture.std() * 40.0 + 128.0
        textures.append(_split_region(texture, split, val_fraction))
    largest = min(t.shape[1] for t in textures)
    if size > largest:
        raise ValueError(f"size must be at most {largest} for the {split} split. "
                         f"Received: {size}")
    rng = np.random.default_rng((seed, 0 if split == "train" else 1))
    rows, cols = np.mgrid[0:size, 0:size]
    images = np.empty((n, size, size), np.float32)
    masks = np.empty((n, size, size), np.int32)
    for i in range(n):
        cells = rng.integers(regions[0], regions[1] + 1)
        centres = rng.uniform(0, size, (cells, 2))
        classes = rng.integers(0, len(TEXTURES), cells)
        classes[:2] = rng.choice(len(TEXTURES), 2, replace=False)  # at least two textures
        distance = (rows[..., None] - centres[:, 0]) ** 2 + (cols[..., None] - centres[:, 1]) ** 2
        masks[i] = classes[np.argmin(distance, axis=-1)]
        for label, texture in enumerate(textures):
            top = rng.integers(0, texture.shape[0] - size + 1)
            left = rng.integers(0, texture.shape[1] - size + 1)
            crop = texture[top:top + size, left:left + size]
            images[i][masks[i] == label] = crop[masks[i] == label]
    images = np.clip(np.round(images), 0, 255).astype(np.uint8)
    return np.repeat(images[..., None], 3, axis=-1), masks, list(TEXTURES)


# Objects cut from real photographs that ship inside scikit-image, as
# (photograph, (top, left, bottom, right)) of the object in it; "face" is the
# 100 faces of ``skimage.data.lfw_subset`` (75 for training, 25 held out).
OBJECTS = {
    "cat": ("chelsea", (0, 30, 300, 390)),
    "cup": ("coffee", (15, 75, 390, 480)),
    "rocket": ("rocket", (120, 245, 415, 395)),  # with some sky: aspect 2, as anchors
    "face": ("lfw_subset", None),
}
# Real photographs the objects are pasted on (none of them holds an object).
BACKGROUNDS = (
    "brick", "camera", "clock", "coins", "grass", "gravel",
    "hubble_deep_field", "immunohistochemistry", "moon", "page",
)


def _resize(image, height, width):
    from skimage.transform import resize

    return resize(image.astype(np.float32), (height, width), order=1, anti_aliasing=True,
                  preserve_range=True)


def _object_crops(split):
    """Per class, the list of object images (float32 RGB) a split pastes."""
    from skimage import data as skdata

    crops = []
    for name, (photo, box) in OBJECTS.items():
        if box is not None:
            top, left, bottom, right = box
            crops.append([_photo(photo)[top:bottom, left:right].astype(np.float32)])
            continue
        faces = skdata.lfw_subset()[:100]  # the first 100 are faces
        faces = faces[:75] if split == "train" else faces[75:]
        crops.append([np.repeat(face[..., None] * 255.0, 3, axis=-1) for face in faces])
    return crops


def pasted_objects(split, n=64, size=128, objects=(1, 3), scale=(24, 64), val_fraction=0.25,
                   seed=0):
    """The offline pasted-object detection set: where is each cat, cup, rocket
    and face, and which is it?

    Every image is a random square crop of one real photograph from
    ``skimage.data`` (``BACKGROUNDS``) with ``objects`` objects pasted on it:
    crops of real photographs (``OBJECTS``: a cat, a cup, a rocket, and faces from
    ``lfw_subset``) at a random scale (the square root of the box area is drawn
    from ``scale`` pixels, the object's aspect ratio kept), random position and
    horizontal flip, and a brightness factor in [0.8, 1.2]. Objects do not
    overlap, so every box is exact. Train backgrounds come from the left
    ``1 - val_fraction`` of each photograph and validation backgrounds from the
    right part (no shared pixels); the held-out faces are people the training
    never saw, while the cat, the cup and the rocket are single objects seen in
    both splits at other scales, places and backgrounds.

    Returns:
        ``(images uint8 (n, size, size, 3), boxes float32 (n, max(objects), 4),
        labels int32 (n, max(objects)), class_names)``; boxes are
        ``(x_min, y_min, x_max, y_max)`` in pixels ("xyxy"); unused rows have
        label ``-1`` and box ``-1`` (keras-hub's padding).
    """
    _check_split(split, val_fraction, n=n, size=size)
    if not 1 <= objects[0] <= objects[1]:
        raise ValueError(f"objects must be (min, max) with 1 <= min <= max. Received: {objects}")
    rng = np.random.default_rng((seed, 2 if split == "train" else 3))
    crops = _object_crops(split)
    backgrounds = [_split_region(_photo(name), split, val_fraction) for name in BACKGROUNDS]
    images = np.empty((n, size, size, 3), np.uint8)
    boxes = np.full((n, objects[1], 4), -1.0, np.float32)
    labels = np.full((n, objects[1]), -1, np.int32)
    for i in range(n):
        region = backgrounds[rng.integers(len(backgrounds))]
        rh, rw = region.shape[:2]
        side = int(rng.integers(min(rh, rw) // 2, min(rh, rw) + 1))
        top, left = rng.integers(0, rh - side + 1), rng.integers(0, rw - side + 1)
        canvas = _resize(region[top:top + side, left:left + side], size, size)
        placed = []
        for _ in range(rng.integers(objects[0], objects[1] + 1)):
            label = int(rng.integers(len(crops)))
            crop = crops[label][rng.integers(len(crops[label]))]
            aspect = crop.shape[0] / crop.shape[1]
            root = rng.uniform(*scale)
            h = int(np.clip(round(root * np.sqrt(aspect)), 4, size - 1))
            w = int(np.clip(round(root / np.sqrt(aspect)), 4, size - 1))
            for _ in range(50):  # a free place, or this object is left out
                y, x = int(rng.integers(0, size - h + 1)), int(rng.integers(0, size - w + 1))
                if all(x >= b[2] or x + w <= b[0] or y >= b[3] or y + h <= b[1] for b in placed):
                    break
            else:
                continue
            patch = _resize(crop, h, w) * rng.uniform(0.8, 1.2)
            canvas[y:y + h, x:x + w] = patch[:, ::-1] if rng.random() < 0.5 else patch
            boxes[i, len(placed)] = (x, y, x + w, y + h)
            labels[i, len(placed)] = label
            placed.append((x, y, x + w, y + h))
        images[i] = np.clip(np.round(canvas), 0, 255).astype(np.uint8)
    return images, boxes, labels, list(OBJECTS)


def write_image_folder(directory, images, labels, class_names):
    """Writes ``images`` as PNG files into ``directory/<class>/``."""
    for name in class_names:
        os.makedirs(os.path.join(directory, name), exist_ok=True)
    for i, (image, label) in enumerate(zip(images, labels)):
        path = os.path.join(directory, class_names[label], f"{i:05d}.png")
        tf.io.write_file(path, tf.io.encode_png(image))
    return directory
