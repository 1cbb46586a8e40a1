import numpy as np
import pytest

from keras_hiri.training import data

# Nothing here depends on the Keras backend (see tests/conftest.py).
pytestmark = pytest.mark.backend_independent

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


def _jpeg(image):
    import tensorflow as tf

    return tf.io.encode_jpeg(image).numpy()


def _tar(path, members):
    """Writes a tar of ``{name: bytes}``."""
    import io
    import tarfile

    with tarfile.open(path, "w") as tar:
        for name, payload in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))


def _fake_ilsvrc(manual_dir, per_class=4):
    """ILSVRC2012 train and val tars of real photo crops (JPEG), two synsets."""
    import io
    import tarfile

    x, _, _ = data.photo_patches("train", patch_size=32, per_class=per_class)
    synsets = ("n01440764", "n01443537")  # ImageNet classes 0 and 1
    inner = {}
    for k, synset in enumerate(synsets):
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w") as tar:
            for i in range(per_class):
                payload = _jpeg(x[k * per_class + i])
                info = tarfile.TarInfo(f"{synset}_{i}.JPEG")
                info.size = len(payload)
                tar.addfile(info, io.BytesIO(payload))
        inner[f"{synset}.tar"] = buffer.getvalue()
    _tar(manual_dir / "ILSVRC2012_img_train.tar", inner)
    _tar(manual_dir / "ILSVRC2012_img_val.tar", {
        f"ILSVRC2012_val_{i + 1:08d}.JPEG": _jpeg(x[i]) for i in range(3)})


def test_imagenet_builds_offline_from_manual_tars_without_writing_there(tmp_path):
    pytest.importorskip("tensorflow_datasets")
    manual = tmp_path / "manual"
    manual.mkdir()
    _fake_ilsvrc(manual)
    before = sorted(p.name for p in manual.iterdir())
    ds, classes, examples = data.tfds_dataset(
        "imagenet2012", "train", data_dir=str(tmp_path / "tfds"), manual_dir=str(manual))
    assert classes == 1000 and examples == 8
    labels = sorted(int(label) for _, label in ds.as_numpy_iterator())
    assert labels == [0] * 4 + [1] * 4
    image = next(iter(ds))[0].numpy()
    assert image.shape == (32, 32, 3) and image.std() > 10  # a decoded photograph
    val, _, val_examples = data.tfds_dataset(
        "imagenet2012", "validation", data_dir=str(tmp_path / "tfds"), manual_dir=str(manual))
    assert val_examples == 3
    assert sorted(p.name for p in manual.iterdir()) == before  # the manual dir is only read


def test_tfds_image_folder_root_and_cli_steps_default(tmp_path):
    pytest.importorskip("tensorflow_datasets")
    x, y, names = data.photo_patches("train", patch_size=32, per_class=2)
    data.write_image_folder(str(tmp_path / "train"), x, y, names)
    xv, yv, _ = data.photo_patches("validation", patch_size=32, per_class=1)
    data.write_image_folder(str(tmp_path / "val"), xv, yv, names)
    ds, classes, examples = data.tfds_dataset(str(tmp_path), "train")
    assert (classes, examples) == (10, 20)
    assert next(iter(ds))[0].shape == (32, 32, 3)
    assert data.tfds_dataset(str(tmp_path), "validation")[2] == 10  # found as val/
    assert data.tfds_dataset(str(tmp_path), "test", missing_ok=True) is None
    with pytest.raises(ValueError, match="no 'test' split.*'train'"):
        data.tfds_dataset(str(tmp_path), "test")

    from keras_hiri.cli import train as train_cli

    args = train_cli.parse(["--tfds", str(tmp_path), "--output-dir", str(tmp_path / "out"),
                            "--batch-size", "4", "--image-size", "32"])
    train_ds, val_ds, num_classes = train_cli.load(args)
    assert num_classes == 10 and val_ds is not None
    assert args.steps_per_epoch == 5  # 20 images // batch 4


def test_tfds_never_downloads_and_says_why(tmp_path, monkeypatch):
    tfds = pytest.importorskip("tensorflow_datasets")

    def no_download(*args, **kwargs):
        raise AssertionError("download_and_prepare was called")

    monkeypatch.setattr(tfds.core.DatasetBuilder, "download_and_prepare", no_download)
    with pytest.raises(ValueError, match="'mnist' is not prepared.*never downloads"):
        data.tfds_dataset("mnist", "train", data_dir=str(tmp_path))
    with pytest.raises(ValueError, match="manual files.*manual_dir"):
        data.tfds_dataset("imagenet2012", "train", data_dir=str(tmp_path))


def test_missing_tfds_is_reported_as_missing(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "tensorflow_datasets", None)  # as if not installed
    with pytest.raises(ImportError, match=r"tensorflow_datasets.*keras-hiri\[train\]"):
        data.tfds_dataset("imagenet2012", "train")


def test_texture_mosaics_have_exact_masks_and_disjoint_splits():
    x, masks, names = data.texture_mosaics("train", n=6, size=48)
    assert names == ["brick", "grass", "gravel"]
    assert x.shape == (6, 48, 48, 3) and x.dtype == np.uint8 and masks.shape == (6, 48, 48)
    assert all(len(np.unique(m)) >= 2 for m in masks)  # every mosaic mixes textures
    again, masks_again, _ = data.texture_mosaics("train", n=6, size=48)
    np.testing.assert_array_equal(x, again)
    np.testing.assert_array_equal(masks, masks_again)
    val, _, _ = data.texture_mosaics("validation", n=6, size=48)
    assert not np.array_equal(x, val)
    # Each texture is standardised: the classes cannot be told apart by brightness.
    means = [x[..., 0][masks == k].mean() for k in range(3)]
    assert max(means) - min(means) < 25
    with pytest.raises(ValueError, match="size must be at most 128"):
        data.texture_mosaics("validation", size=200)


def test_pasted_objects_have_exact_disjoint_boxes_and_held_out_faces():
    x, boxes, labels, names = data.pasted_objects("train", n=12, size=96)
    xv, _, labels_v, _ = data.pasted_objects("validation", n=4, size=96)
    assert names == ["cat", "cup", "rocket", "face"]
    assert x.shape == (12, 96, 96, 3) and x.dtype == np.uint8 and boxes.shape == (12, 3, 4)
    used = labels >= 0
    assert used[:, 0].all() and set(labels[used].tolist()) <= {0, 1, 2, 3}
    assert (boxes[~used] == -1).all()
    for image_boxes, image_used in zip(boxes, used):
        kept = image_boxes[image_used]
        assert (kept[:, :2] >= 0).all() and (kept[:, 2:] <= 96).all()
        assert (kept[:, 2:] > kept[:, :2]).all()
        for i in range(len(kept)):  # no two boxes overlap
            for j in range(i):
                a, b = kept[i], kept[j]
                assert a[0] >= b[2] or a[2] <= b[0] or a[1] >= b[3] or a[3] <= b[1]
    # Boxed regions hold an object (not flat); the two splits' faces are
    # different people.
    x0, y0, x1, y1 = boxes[0, 0].astype(int)
    assert x[0, y0:y1, x0:x1].std() > 5
    train_faces, val_faces = data._object_crops("train")[3], data._object_crops("validation")[3]
    assert len(train_faces) == 75 and len(val_faces) == 25
    assert not any(np.array_equal(a, b) for a in train_faces for b in val_faces)
    np.testing.assert_array_equal(x, data.pasted_objects("train", n=12, size=96)[0])
    assert not np.array_equal(x[:4], xv)
    with pytest.raises(ValueError, match="split"):
        data.pasted_objects("test")
    with pytest.raises(ValueError, match=r"objects must be \(min, max\)"):
        data.pasted_objects("train", objects=(0, 2))


@pytest.mark.parametrize("make,message", [
    (lambda: data.photo_patches("test"), "split must be 'train' or 'validation'"),
    (lambda: data.photo_patches("train", patch_size=0), "patch_size must be an int >= 1"),
    (lambda: data.photo_patches("train", val_fraction=1.5), r"val_fraction must be in \(0, 1\)"),
    (lambda: data.texture_mosaics("train", n=0), "n must be an int >= 1"),
    (lambda: data.pasted_objects("validation", val_fraction=0), "val_fraction must be in"),
    (lambda: data.pasted_objects("train", size=64.0), "size must be an int >= 1"),
], ids=["split", "patch-size", "val-fraction", "mosaic-n", "objects-val-fraction", "objects-size"])
def test_offline_sets_reject_bad_arguments(make, message):
    with pytest.raises(ValueError, match=message):
        make()
