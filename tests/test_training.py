import csv
import os
import signal
import subprocess
import sys

import keras
import numpy as np
import pytest

from keras_hiri.training import run as training
from tests.helpers import ROOT, to_numpy


def test_recipe_defaults_are_the_papers():
    r = training.Recipe()
    assert (r.epochs, r.batch_size, r.weight_decay, r.warmup_epochs) == (300, 1024, 0.05, 5)
    assert r.learning_rate == pytest.approx(1e-3)
    assert r.distillation
    assert training.Recipe(batch_size=256).learning_rate == pytest.approx(2.5e-4)  # linear scaling


@pytest.mark.parametrize("field,value,message", [
    ("epochs", 0, "epochs must be an int >= 1"), ("epochs", 2.5, "epochs must be an int"),
    ("alpha", 1.5, r"alpha must be in \[0, 1\]"), ("ema_momentum", 1.0, r"ema_momentum must be in \[0, 1\)"),
    ("weight_decay", -0.1, "weight_decay must be a number >= 0"), ("distillation", "yes", "distillation must be True or False"),
])
def test_recipe_rejects_values_out_of_range(field, value, message):
    with pytest.raises(ValueError, match=f"Recipe.{message}"):
        training.Recipe(**{field: value})


def test_schedule_warms_up_linearly_then_cosine_decays():
    r = training.Recipe(epochs=10, batch_size=128, warmup_epochs=2)
    schedule = r.schedule(steps_per_epoch=5)
    lrs = np.array([float(to_numpy(schedule(step))) for step in range(50)])
    peak = r.learning_rate
    np.testing.assert_allclose(lrs[:11], np.linspace(0, peak, 11), rtol=1e-4, atol=1e-9)
    assert np.all(np.diff(lrs[10:]) <= 1e-12)  # monotone decay after warm-up
    assert r.min_learning_rate <= lrs[-1] < r.min_learning_rate + 0.01 * peak


def test_optimizer_is_adamw_without_decay_on_norms_and_biases():
    opt = training.Recipe().optimizer(steps_per_epoch=10)
    assert isinstance(opt, keras.optimizers.AdamW) and opt.weight_decay == 0.05
    kernel = keras.Variable(np.ones((2, 2)), name="kernel")
    bias = keras.Variable(np.ones((2,)), name="bias")
    assert opt._use_weight_decay(kernel) and not opt._use_weight_decay(bias)


def _history(path):
    with open(path) as f:
        return list(csv.DictReader(f))


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
def test_resume_after_sigkill_matches_uninterrupted_run(tmp_path):
    env = dict(os.environ, PYTHONPATH=ROOT, TF_CPP_MIN_LOG_LEVEL="3")
    cmd = [sys.executable, "-m", "tests.resume_helper"]
    full, resumed = str(tmp_path / "full"), str(tmp_path / "resumed")
    uninterrupted = subprocess.Popen(cmd + [full], cwd=ROOT, env=env)  # side by side with the killed run
    try:
        killed = subprocess.run(cmd + [resumed, "--kill-epoch", "1", "--kill-batch", "0"],
                                cwd=ROOT, env=env, timeout=900)
        assert uninterrupted.wait(timeout=900) == 0
    finally:
        uninterrupted.kill()  # no-op once it has exited
    assert killed.returncode == -signal.SIGKILL
    assert len(_history(os.path.join(resumed, "history.csv"))) == 1  # died in epoch 2 of 2
    assert not os.path.exists(os.path.join(resumed, "final.keras"))
    subprocess.run(cmd + [resumed], check=True, cwd=ROOT, env=env, timeout=900)
    a = _history(os.path.join(full, "history.csv"))
    b = _history(os.path.join(resumed, "history.csv"))
    assert [row["epoch"] for row in a] == [row["epoch"] for row in b] == ["0", "1"]
    for row_a, row_b in zip(a, b):
        for key in ("loss", "accuracy", "val_loss", "val_accuracy"):
            assert float(row_b[key]) == pytest.approx(float(row_a[key]), rel=1e-4, abs=1e-5), key
    for saved in ("teacher.keras", "final.keras"):
        ta = keras.saving.load_model(os.path.join(full, saved))
        tb = keras.saving.load_model(os.path.join(resumed, saved))
        for wa, wb in zip(ta.weights, tb.weights):
            np.testing.assert_allclose(to_numpy(wb), to_numpy(wa), rtol=1e-4, atol=1e-5)


def test_resume_helper_runs_the_default_augmentation_and_drop_path():
    """The exactness above is claimed for the defaults users run."""
    from tests.resume_helper import RECIPE

    defaults = training.Recipe()
    for field in ("drop_path_rate", "randaugment", "erasing_prob", "mixup_alpha", "cutmix_alpha",
                  "label_smoothing", "distillation"):
        assert getattr(RECIPE, field) == getattr(defaults, field), field
    assert RECIPE.drop_path_rate > 0 and RECIPE.randaugment and RECIPE.erasing_prob > 0


@pytest.mark.skipif(keras.backend.backend() != "jax", reason="keras.distribution is JAX-only")
def test_jax_data_parallel_on_two_simulated_devices(tmp_path):
    """--data-parallel shards each batch over 2 (XLA host-simulated) devices."""
    # Added to the test process's XLA flags (tests/conftest.py), not in their
    # place: with XLA's default optimisation this run compiled 4x slower.
    flags = os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=2"
    env = dict(os.environ, PYTHONPATH=ROOT, TF_CPP_MIN_LOG_LEVEL="3", XLA_FLAGS=flags.strip())
    code = (
        "import keras, jax\n"
        "from keras_hiri.cli.train import main\n"
        "assert len(jax.devices()) == 2\n"
        f"main(['--photo-patches', '--variant', 'tiny', '--image-size', '64', '--epochs', '1',"
        f" '--batch-size', '16', '--patches-per-class', '4', '--no-randaugment',"
        f" '--output-dir', r'{tmp_path}', '--data-parallel'])\n"
        "d = keras.distribution.distribution()\n"
        "print('MESH', d.device_mesh.shape)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, timeout=900,
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "MESH (2,)" in out.stdout
    assert os.path.exists(os.path.join(tmp_path, "teacher.keras"))


def test_fine_tune_from_the_registry_at_a_new_resolution_with_layer_decay(tmp_path):
    """The documented fine-tune path: registry checkpoint at 64 -> 80 px, a new
    5-class head, layer decay; one epoch of the recipe on the photo patches."""
    import keras_hiri
    from keras_hiri.training import data
    from keras_hiri.training.optimizer import LayerDecayAdamW

    x, y, _ = data.photo_patches("train", patch_size=80, per_class=4)
    keep = y < 5  # a new task: 5 of the 10 classes
    recipe = training.Recipe(epochs=1, batch_size=8, warmup_epochs=0, layer_decay=0.75, seed=1)
    history, trainer = training.train("tiny", (x[keep], y[keep]), None, (80, 80), str(tmp_path), recipe,
                                      verbose=0, init_weights="tiny_skimage_patches_64")
    assert np.isfinite(history.history["loss"]).all()
    assert isinstance(trainer.optimizer, LayerDecayAdamW)
    assert trainer.student.classifier.units == 5
    start = keras_hiri.HiriViT("tiny", input_shape=(80, 80, 3), include_top=False,
                               weights="tiny_skimage_patches_64")
    fresh = keras_hiri.HiriViT("tiny", input_shape=(80, 80, 3), include_top=False)
    trained = trainer.student.get_layer("stem").get_weights()[0]
    loaded = start.get_layer("stem").get_weights()[0]
    assert not np.array_equal(trained, loaded)  # it trained
    assert np.abs(trained - loaded).max() < 0.1 * np.abs(trained - fresh.get_layer("stem").get_weights()[0]).max()
    assert os.path.exists(tmp_path / "final.keras")
