import numpy as np
import pytest

from keras_hiri.training import pipeline


def _arrays(n=12, side=40, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, side, side, 3)).astype("uint8"), np.arange(n) % 3


def _epoch(ds, epoch, order=None):
    ds.set_epoch(epoch)
    order = order or range(len(ds))
    return {i: ds[i] for i in order}


def test_every_batch_is_a_function_of_seed_epoch_and_index_with_default_augmentation():
    x, y = _arrays()
    ds = pipeline.KeyedImageDataset(x, y, (32, 32), 4, seed=1)  # RandAugment + Erasing on
    assert len(ds.augmenters) == 2
    first = _epoch(ds, 0)
    backwards = _epoch(ds, 0, order=[2, 1, 0])  # no hidden state carried between batches
    fresh = _epoch(pipeline.KeyedImageDataset(x, y, (32, 32), 4, seed=1), 0)
    for i in range(3):
        for other in (backwards, fresh):
            np.testing.assert_array_equal(first[i][0], other[i][0])
            np.testing.assert_array_equal(first[i][1], other[i][1])
    assert first[0][0].shape == (4, 32, 32, 3) and first[0][0].dtype == np.float32
    second = _epoch(ds, 1)
    assert not all(np.array_equal(first[i][1], second[i][1]) for i in range(3))
    assert sorted(np.concatenate([second[i][1] for i in range(3)]).tolist()) == sorted(y.tolist())
    other_seed = _epoch(pipeline.KeyedImageDataset(x, y, (32, 32), 4, seed=2), 0)
    assert not np.array_equal(first[0][0], other_seed[0][0])


def test_random_resized_crop_and_flip_resample_the_right_pixels():
    """A box of the whole image, unflipped, at the source size, is the identity;
    flipped, it mirrors the columns."""
    x, _ = _arrays(2, 16)
    box = [(0, 0, 16, 16)] * 2
    same = np.asarray(pipeline.crop_and_resize(x, box, [False, False], (16, 16)))
    np.testing.assert_allclose(same, x.astype("float32"), atol=1e-3)
    mirrored = np.asarray(pipeline.crop_and_resize(x, box, [True, False], (16, 16)))
    np.testing.assert_allclose(mirrored[0], x[0, :, ::-1].astype("float32"), atol=1e-3)
    np.testing.assert_allclose(mirrored[1], x[1].astype("float32"), atol=1e-3)
    quarter = np.asarray(pipeline.crop_and_resize(x, [(8, 8, 8, 8)] * 2, [False] * 2, (16, 16)))
    # Upsampling x2 keeps the crop's pixels at the even output positions' neighbourhood.
    assert np.abs(quarter[:, ::2, ::2].mean() - x[:, 8:, 8:].mean()) < 5


def test_inception_crop_box_respects_scale_ratio_and_bounds():
    rng = np.random.default_rng(0)
    for _ in range(200):
        top, left, h, w = pipeline.inception_crop_box(rng, 60, 90)
        assert 0 <= top and top + h <= 60 and 0 <= left and left + w <= 90
        assert 0.08 * 60 * 90 * 0.8 <= h * w <= 60 * 90


def test_evaluation_batches_are_in_order_and_centre_cropped():
    x, y = _arrays(5, 40)
    ds = pipeline.KeyedImageDataset(x, y, (35, 35), 2, train=False)
    assert len(ds) == 3 and ds.augmenters == []
    images, labels = ds[2]
    assert labels.tolist() == [y[4]] and images.shape == (1, 35, 35, 3)
    np.testing.assert_array_equal(np.concatenate([ds[i][1] for i in range(3)]), y)
    assert pipeline.center_crop_box(40, 40, 0.875) == (2.5, 2.5, 35.0, 35.0)


@pytest.mark.parametrize("kwargs,message", [
    ({"batch_size": 0}, "batch_size"),
    ({"batch_size": 13}, "batch_size"),
    ({"labels": np.zeros(3)}, "one label each"),
    ({"labels": np.full(12, 0.5)}, "labels must be non-negative ints"),
    ({"labels": np.full(12, -1)}, "labels must be non-negative ints"),
    ({"image_size": 32}, r"image_size must be \(height, width\)"),
    ({"image_size": (32, 0)}, "image_size's width must be an int >= 1"),
    ({"erasing_prob": 2.0}, "erasing_prob must be in"),
    ({"crop_pct": 0}, "crop_pct"),
])
def test_bad_arguments(kwargs, message):
    x, y = _arrays()
    args = {"images": x, "labels": y, "image_size": (32, 32), "batch_size": 4, **kwargs}
    with pytest.raises(ValueError, match=message):
        pipeline.KeyedImageDataset(**args)


def test_index_out_of_range_ends_iteration():
    x, y = _arrays()
    with pytest.raises(IndexError):
        pipeline.KeyedImageDataset(x, y, (32, 32), 4)[3]


def test_extra_keras_layers_are_applied_after_the_recipe_and_keyed():
    import keras

    x, y = _arrays()

    def dataset(augmentations=()):
        return pipeline.KeyedImageDataset(x, y, (32, 32), 4, seed=1, randaugment=False,
                                          erasing_prob=0.0, augmentations=augmentations)

    plain = dataset()[0][0]
    # Random Erasing as an extra layer erases (fills) a box of every image.
    extra = dataset(keras.layers.RandomErasing(factor=1.0, value_range=(0, 255)))
    assert len(extra.augmenters) == 1
    first, again = extra[0][0], extra[0][0]
    np.testing.assert_array_equal(first, again)  # keyed: the same batch twice
    assert not np.array_equal(first, plain)
    np.testing.assert_array_equal(
        first, dataset([keras.layers.RandomErasing(factor=1.0, value_range=(0, 255))])[0][0])
    evaluation = pipeline.KeyedImageDataset(
        x, y, (32, 32), 4, train=False, augmentations=keras.layers.RandomErasing(factor=1.0))
    assert evaluation.augmenters == []  # evaluation is never augmented


def test_augmentations_that_cannot_be_keyed_or_are_not_layers_are_refused():
    import keras

    x, y = _arrays()
    with pytest.raises(ValueError, match="must be Keras layers.*Received: 'flip'"):
        pipeline.KeyedImageDataset(x, y, (32, 32), 4, augmentations=["flip"])
    with pytest.raises(ValueError, match="Keras core's augmentation API.*Dense.*train_pipeline"):
        pipeline.KeyedImageDataset(x, y, (32, 32), 4, augmentations=keras.layers.Dense(3))
