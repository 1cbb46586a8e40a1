import subprocess
import sys

import pytest

from keras_hiri import cli
from tests.helpers import ROOT


@pytest.mark.backend_independent
def test_profile_verb(capsys):
    assert cli.main(["profile", "--variant", "S", "--resolution", "448"]) == 0
    out = capsys.readouterr().out
    assert "hiri_vit_s @ 448x448" in out and "stage5" in out


@pytest.mark.backend_independent
def test_help_and_version_import_neither_keras_nor_a_backend():
    code = (
        "import sys, keras_hiri_cli\n"
        "for argv in (['--help'], ['--version']):\n"
        "    try:\n"
        "        keras_hiri_cli.main(argv)\n"
        "    except SystemExit as e:\n"
        "        assert e.code == 0, e.code\n"
        "heavy = sorted(m for m in sys.modules\n"
        "               if m.split('.')[0] in ('keras', 'keras_hiri', 'tensorflow', 'jax', 'torch'))\n"
        "print('HEAVY', heavy)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "HEAVY []" in out.stdout and "detect" in out.stdout and "keras-hiri 0." in out.stdout


@pytest.mark.backend_independent
def test_the_command_changes_no_process_setting():
    """``keras-hiri`` run as the program leaves the process's environment (XLA's
    flags, the allocator's variables) as it found it: those are the caller's."""
    code = ("import os, sys\nfrom keras_hiri_cli import main\nbefore = dict(os.environ)\n"
            "sys.argv = ['keras-hiri', 'profile', '--variant', 'tiny', '--resolution', '64']\nmain()\n"
            "changed = sorted(k for k in set(before) | set(os.environ) if before.get(k) != os.environ.get(k))\n"
            "print('CHANGED', [k for k in changed if k != 'TF_CPP_MIN_LOG_LEVEL'])\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "CHANGED []" in out.stdout and "GMACs" in out.stdout, out.stdout[-2000:]


@pytest.mark.backend_independent
def test_unknown_verb_exits_with_usage():
    with pytest.raises(SystemExit) as info:
        cli.main(["fly"])
    assert info.value.code == 2


@pytest.mark.backend_independent
def test_unknown_variant_is_a_clear_error(capsys):
    assert cli.main(["profile", "--variant", "XXL"]) == 2
    assert "Unknown HIRI-ViT variant" in capsys.readouterr().err


def test_predict_prints_top5_names(tmp_path, capsys):
    import tensorflow as tf
    from skimage import data

    path = str(tmp_path / "cat.png")
    tf.io.write_file(path, tf.io.encode_png(data.chelsea()))
    assert cli.main(["predict", path, "--variant", "tiny", "--image-size", "64"]) == 0
    captured = capsys.readouterr()
    assert "randomly initialised" in captured.err
    lines = captured.out.strip().splitlines()
    assert lines[0] == path and len(lines) == 6


@pytest.mark.parametrize(
    "make,message",
    [
        (lambda d: str(d / "missing.jpg"), "image file not found"),
        (lambda d: (d / "notes.txt").write_text("hello") and str(d / "notes.txt"), "not a readable image"),
    ],
)
def test_predict_bad_files(tmp_path, capsys, make, message):
    assert cli.main(["predict", make(tmp_path), "--variant", "tiny", "--image-size", "64"]) == 2
    assert message in capsys.readouterr().err


def test_predict_unknown_weights(tmp_path, capsys):
    path = str(tmp_path / "x.png")
    import tensorflow as tf

    tf.io.write_file(path, tf.io.encode_png(tf.zeros((8, 8, 3), tf.uint8)))
    assert cli.main(["predict", path, "--variant", "tiny", "--weights", "nope"]) == 2
    assert "neither None, a known name" in capsys.readouterr().err


@pytest.mark.backend_independent
def test_export_verb_rejects_missing_model(tmp_path):
    with pytest.raises(SystemExit) as info:
        cli.main(["export", str(tmp_path / "none.keras"), str(tmp_path / "out")])
    assert info.value.code == 2


@pytest.mark.backend_independent
def test_train_verb_help(capsys):
    with pytest.raises(SystemExit) as info:
        cli.main(["train", "--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert "--no-distillation" in out and "--ema-momentum" in out and "BackupAndRestore" in out


@pytest.mark.backend_independent
def test_train_verb_needs_a_data_source():
    with pytest.raises(SystemExit) as info:
        cli.main(["train", "--output-dir", "x"])
    assert info.value.code == 2


def test_predict_with_registry_weights_uses_its_class_names(tmp_path, capsys):
    import tensorflow as tf

    from keras_hiri.training import data

    x, y, names = data.photo_patches("validation", patch_size=64, per_class=1)
    path = str(tmp_path / "patch.png")
    tf.io.write_file(path, tf.io.encode_png(x[3]))  # a patch of "chelsea"
    assert cli.main(["predict", path, "--variant", "tiny", "--weights", "tiny_skimage_patches_64"]) == 0
    out = capsys.readouterr().out.splitlines()[1:]
    assert len(out) == 5 and all(line.split()[-1] in names for line in out)
