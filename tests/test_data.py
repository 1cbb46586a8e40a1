import numpy as np
import pytest

from keras_hiri import data

pytest.importorskip("skimage")


def test_photo_patches_are_real_balanced_and_split_by_region():
    x, y, names = data.photo_patches("train", patch_size=32, per_class=4)
    xv, yv, _ = data.photo_patches("validation", patch_size=32, per_class=2)
    assert x.shape == (40, 32, 32, 3) and x.dtype == np.uint8
    assert np.bincount(y).tolist() == [4] * 10 and np.bincount(yv).tolist() == [2] * 10
    assert names == list(data.PHOTOS)
    assert x.std() > 10  # photographs, not constant fills
    # Same seed -> same set; train and validation differ.
    x2, _, _ = data.photo_patches("train", patch_size=32, per_class=4)
    np.testing.assert_array_equal(x, x2)
    with pytest.raises(ValueError, match="split"):
        data.photo_patches("test")


def test_image_folder_round_trip(tmp_path):
    x, y, names = data.photo_patches("validation", patch_size=32, per_class=2)
    data.write_image_folder(str(tmp_path), x, y, names)
    ds, classes = data.image_folder(str(tmp_path), load_size=(32, 32), shuffle=False)
    assert classes == sorted(names)
    items = list(ds.as_numpy_iterator())
    assert len(items) == 20 and items[0][0].shape == (32, 32, 3)
    assert sorted(int(label) for _, label in items) == sorted(
        sorted(names).index(names[i]) for i in y
    )


def test_image_folder_errors(tmp_path):
    with pytest.raises(ValueError, match="not found"):
        data.image_folder(str(tmp_path / "missing"))
    with pytest.raises(ValueError, match="class sub-folders"):
        data.image_folder(str(tmp_path))


def test_tfds_never_downloads(tmp_path):
    pytest.importorskip("tensorflow_datasets")
    with pytest.raises(ValueError, match="not prepared|cannot be downloaded"):
        data.tfds_dataset("imagenet2012", "train", data_dir=str(tmp_path), manual_dir=str(tmp_path))
