"""The README's main job (examples/demo.py) runs end to end on a small input."""

import os

import pytest

from tests.helpers import ROOT, load_script

pytest.importorskip("skimage")


def _load(name):
    return load_script("examples", name)


def test_demo_classifies_photo_and_prints_profile(capsys):
    demo = _load("demo")
    photo = demo.load_photo(64)
    assert photo.shape == (64, 64, 3) and 0 <= photo.min() and photo.max() <= 255
    demo.main(["--variant", "S", "--resolution", "64"])
    out = capsys.readouterr().out
    assert "randomly initialised" in out
    assert out.count(" p=") == 5
    assert "total" in out and "stage5" in out


def test_predict_logs_no_errors():
    """TensorFlow's graph optimiser logged "Node .../stage3_block1_cffn_1/add_1 has an
    empty op name" on every run when the CFFN's depthwise bias was a BiasAdd (its remapper
    fuses DepthwiseConv2dNative + BiasAdd + Add into a node with no op; see
    keras_hiri.ops.conv): on this backend, predict with a network of every block type
    must log no error line."""
    import subprocess
    import sys

    script = (
        "import numpy as np, keras_hiri\n"
        "m = keras_hiri.HiriViT('tiny', input_shape=(64, 64, 3))\n"
        "m.predict(np.zeros((2, 64, 64, 3), 'float32'), verbose=0)\n"
    )
    import keras

    env = dict(os.environ, KERAS_BACKEND=keras.backend.backend(), TF_CPP_MIN_LOG_LEVEL="0")
    run = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True,
                         timeout=600, cwd=ROOT)
    assert run.returncode == 0, run.stderr[-3000:]
    # The full tensorflow wheel (keras-hub's tensorflow-text pulls it in) probes
    # for a GPU at import and logs "failed call to cuInit" where there is none:
    # that line is about the machine, not the model.
    errors = [line for line in run.stderr.splitlines()
              if (line.startswith("E0000") or "empty op name" in line)
              and "cuInit" not in line]
    assert not errors, errors


def test_upgrade_backbone_example_keeps_the_grids_and_trains():
    upgrade = _load("upgrade_backbone")
    (plain, side, params, _, grid), (_, side_up, params_up, _, grid_up) = upgrade.main(["--size", "64"])
    assert (side, side_up) == (64, 128) and grid == grid_up == 16
    assert params < params_up < 1.1 * params
