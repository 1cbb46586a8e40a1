import numpy as np
import pytest
import tensorflow as tf

from keras_hiri.training import augmentation


def _images(n=8, h=48, w=40, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, h, w, 3)).astype("uint8")


def test_random_resized_crop_shape_and_range():
    image = tf.constant(_images(1, 50, 70)[0])
    for seed in range(3):
        out = augmentation.random_resized_crop(image, (32, 32), seed=seed)
        assert out.shape == (32, 32, 3)
        assert 0 <= float(tf.reduce_min(out)) and float(tf.reduce_max(out)) <= 255.5


def test_eval_transform_resizes_shorter_side_and_center_crops():
    image = np.zeros((100, 200, 3), "uint8")
    image[:, 95:105] = 255  # a bright vertical bar in the center
    out = augmentation.eval_transform(tf.constant(image), (56, 56), crop_pct=0.875).numpy()
    assert out.shape == (56, 56, 3)
    assert out[:, 28].mean() > 200 and out[:, 0].mean() < 5  # centre kept, borders cropped


def test_train_pipeline_keeps_int_labels():
    x, y = _images(16), np.arange(16) % 4
    ds = augmentation.train_pipeline(
        tf.data.Dataset.from_tensor_slices((x, y)), (32, 32), 8, seed=0
    )
    images, labels = next(iter(ds))
    assert labels.shape == (8,) and labels.dtype.is_integer
    assert images.dtype == tf.float32


def test_eval_pipeline_batches():
    x, y = _images(5), np.arange(5)
    ds = augmentation.eval_pipeline(tf.data.Dataset.from_tensor_slices((x, y)), (24, 24), 2)
    assert [b[0].shape[0] for b in ds] == [2, 2, 1]


def test_train_pipeline_applies_a_keras_cv_layer():
    keras_cv = pytest.importorskip("keras_cv")  # the [kerascv] extra; CI installs it
    x = np.full((8, 32, 32, 3), 200, "uint8")
    cutout = keras_cv.layers.RandomCutout(0.5, 0.5, fill_mode="constant", fill_value=0.0, seed=1)
    ds = augmentation.train_pipeline(
        tf.data.Dataset.from_tensor_slices((x, np.arange(8))), (32, 32), 4, seed=0,
        randaugment=False, erasing_prob=0.0, augmentations=[cutout],
    )
    images, _ = next(iter(ds))
    images = images.numpy()
    # Without the cutout every pixel stays 200 (crop, resize and flip of a flat image).
    assert images.min() == 0.0 and (images == 200.0).mean() > 0.5
    with pytest.raises(ValueError, match="must be Keras layers"):
        augmentation.train_pipeline(
            tf.data.Dataset.from_tensor_slices((x, np.arange(8))), (32, 32), 4,
            augmentations=[lambda images: images])
