import numpy as np
import pytest
import tensorflow as tf

from keras_hiri import augmentation


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


def test_train_pipeline_with_mixing_gives_soft_labels():
    x, y = _images(16), np.arange(16) % 4
    ds = augmentation.train_pipeline(
        tf.data.Dataset.from_tensor_slices((x, y)), (32, 32), 8, num_classes=4, seed=0
    )
    batches = list(ds)
    assert len(batches) == 2
    images, labels = batches[0]
    assert images.shape == (8, 32, 32, 3) and labels.shape == (8, 4)
    np.testing.assert_allclose(labels.numpy().sum(-1), 1.0, atol=1e-5)
    assert labels.numpy().max() < 1.0  # smoothed (and mixed)


def test_train_pipeline_without_mixing_keeps_int_labels():
    x, y = _images(16), np.arange(16) % 4
    ds = augmentation.train_pipeline(
        tf.data.Dataset.from_tensor_slices((x, y)), (32, 32), 8, mix=False, seed=0
    )
    images, labels = next(iter(ds))
    assert labels.shape == (8,) and labels.dtype.is_integer
    assert images.dtype == tf.float32


def test_mix_needs_num_classes():
    with pytest.raises(ValueError, match="num_classes"):
        augmentation.train_pipeline(tf.data.Dataset.from_tensor_slices(([1], [0])), (8, 8), 1)


@pytest.mark.parametrize("cutmix", [True, False])
def test_mix_labels_weights_match_the_pixels(cutmix):
    """Each sample's label weight equals the share of its own pixels (CutMix) or
    the blend factor (MixUp), on every Keras backend."""
    mixer = augmentation.MixLabels(
        3, mixup_alpha=0.0 if cutmix else 0.8, cutmix_alpha=1.0 if cutmix else 0.0,
        label_smoothing=0.0,
    )
    images = tf.constant(np.stack([np.zeros((16, 16, 3)), np.full((16, 16, 3), 255.0)]), tf.float32)
    for _ in range(5):
        out_images, out_labels = mixer(images, tf.constant([0, 1]))
        own = 1.0 - float(tf.reduce_mean(out_images[0])) / 255.0  # sample 0 is all zeros
        assert float(out_labels[0, 0]) == pytest.approx(own, abs=1e-5)
        np.testing.assert_allclose(out_labels.numpy().sum(-1), 1.0, atol=1e-6)


def test_eval_pipeline_batches():
    x, y = _images(5), np.arange(5)
    ds = augmentation.eval_pipeline(tf.data.Dataset.from_tensor_slices((x, y)), (24, 24), 2)
    assert [b[0].shape[0] for b in ds] == [2, 2, 1]


def test_mix_labels_seed_gives_varied_draws():
    """With a seed, each random op keeps its own stream (lambda is not stuck at 0.5)."""
    mixer = augmentation.MixLabels(2, mixup_alpha=0.8, cutmix_alpha=0.0, label_smoothing=0.0, seed=3)
    images = tf.constant(np.stack([np.zeros((4, 4, 3)), np.full((4, 4, 3), 255.0)]), tf.float32)
    ds = tf.data.Dataset.from_tensors((images, tf.constant([0, 1]))).repeat(6).map(mixer)
    lams = [float(y[0, 0]) for _, y in ds]
    assert len(set(round(v, 4) for v in lams)) > 3
