"""Smoke test of an installed keras_hiri in an environment without TensorFlow.

CI installs the built wheel with one backend extra (``[jax]`` or ``[torch]``)
into a fresh virtual environment and runs, from outside the source tree:

    KERAS_BACKEND=jax python scripts/smoke_installed.py

Each check builds, loads registry weights, folds, trains (``EMADistillation.fit``
on arrays, a ``keras.utils.PyDataset``, a grain dataset and, on torch, a
``DataLoader``),
profiles, and checks that what needs TensorFlow says which extra to install.
It prints one line per check and ``N passed, N failed``; the exit status is
the number of failures.
"""

import os
import subprocess
import sys
import tempfile
import traceback

import keras
import numpy as np

import keras_hiri

CHECKS = []


def check(fn):
    CHECKS.append(fn)
    return fn


@check
def tensorflow_is_absent_and_the_package_is_installed():
    try:
        import tensorflow  # noqa: F401
    except ModuleNotFoundError:
        pass
    else:
        raise AssertionError("TensorFlow is importable: this environment must not have it")
    source_root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    assert not os.path.abspath(keras_hiri.__file__).startswith(source_root + os.sep), (
        f"imported from the source tree: {keras_hiri.__file__}"
    )
    assert "site-packages" in keras_hiri.__file__, keras_hiri.__file__


@check
def registry_weights_load_from_the_wheel():
    model = keras_hiri.HiriViT("tiny", input_shape=(64, 64, 3), classes=10,
                               weights="tiny_skimage_patches_64")
    probs = keras.ops.convert_to_numpy(model(np.full((2, 64, 64, 3), 128.0, "float32")))
    assert probs.shape == (2, 10) and np.allclose(probs.sum(-1), 1.0, atol=1e-5)
    backbone = keras_hiri.HiriViT("tiny", weights="tiny_skimage_patches_64", include_top=False,
                                  input_shape=(64, 64, 3))
    assert backbone.get_layer("stem").get_weights()[0].shape == \
        model.get_layer("stem").get_weights()[0].shape


@check
def fold_batchnorm_keeps_outputs():
    model = keras_hiri.HiriViT("tiny", input_shape=(64, 64, 3), classes=10,
                               weights="tiny_skimage_patches_64")
    x = np.random.default_rng(0).uniform(0, 255, (2, 64, 64, 3)).astype("float32")
    folded = keras_hiri.fold_batchnorm(model)
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(folded(x)), keras.ops.convert_to_numpy(model(x)), atol=1e-5
    )


@check
def profile_counts():
    p = keras_hiri.profile(keras_hiri.HiriViT("tiny", input_shape=(64, 64, 3)))
    assert 0.3 < p.params_m < 0.5 and p.gmacs > 0


def _arrays(n=16):
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (n, 64, 64, 3)).astype("uint8"), rng.integers(0, 10, n)


def _teacher_kernel(trainer):
    return keras.ops.convert_to_numpy(trainer.teacher.weights[0])


# One trainer, compiled once (a JAX compile of the step costs minutes on two
# cores): made by keras_hiri.train, then fit again on other input sources.
TRAINER = {}


@check
def train_recipe_on_a_keyed_py_dataset():
    x, y = _arrays()
    recipe = keras_hiri.Recipe(epochs=1, batch_size=8, warmup_epochs=0, seed=0)
    with tempfile.TemporaryDirectory() as out:
        history, trainer = keras_hiri.train("tiny", (x, y), None, (64, 64), out, recipe, verbose=0)
        assert os.path.exists(os.path.join(out, "teacher.keras"))
    assert np.isfinite(history.history["loss"][0])
    assert trainer.student.drop_paths and recipe.drop_path_rate > 0
    TRAINER["trainer"] = trainer


def _fit_moves_the_teacher(data, **kwargs):
    trainer = TRAINER["trainer"]
    before = _teacher_kernel(trainer)
    history = trainer.fit(data, epochs=1, verbose=0, **kwargs)
    assert np.isfinite(history.history["loss"][0])
    assert not np.array_equal(before, _teacher_kernel(trainer)), "the EMA teacher did not move"


@check
def fit_on_arrays():
    x, y = _arrays()
    _fit_moves_the_teacher(x.astype("float32"), y=y, batch_size=8)


@check
def fit_on_a_torch_data_loader():
    if keras.backend.backend() != "torch":
        return "not the torch backend"
    import torch

    x, y = _arrays()
    loader = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(torch.tensor(x, dtype=torch.float32), torch.tensor(y)),
        batch_size=8,
    )
    _fit_moves_the_teacher(loader)


@check
def fit_on_a_grain_dataset():
    import grain

    x, y = _arrays()
    dataset = grain.MapDataset.source(list(zip(x.astype("float32"), y))).batch(8)
    _fit_moves_the_teacher(dataset)


@check
def what_needs_tensorflow_names_the_extra():
    for module in ("keras_hiri.training.data", "keras_hiri.training.augmentation"):
        try:
            __import__(module)
        except ImportError as e:
            assert "keras-hiri[tensorflow]" in str(e), str(e)
        else:
            raise AssertionError(f"{module} imported without TensorFlow")
    model = keras_hiri.HiriViT("tiny", input_shape=(64, 64, 3))
    with tempfile.TemporaryDirectory() as out:
        try:
            keras_hiri.export(model, os.path.join(out, "served"))
        except ImportError as e:
            assert "keras-hiri[tensorflow]" in str(e), str(e)
        else:
            raise AssertionError("export ran without TensorFlow")


@check
def cli_help_answers():
    """The installed console script answers --help; neither it nor `python -m
    keras_hiri.cli` needs TensorFlow."""
    script = os.path.join(os.path.dirname(sys.executable), "keras-hiri")
    for command in ([script, "--help"], [sys.executable, "-m", "keras_hiri.cli", "--help"]):
        out = subprocess.run(command, capture_output=True, text=True, timeout=60)
        assert out.returncode == 0 and "predict" in out.stdout, (command, out.stderr)


def main():
    passed = failed = 0
    for fn in CHECKS:
        try:
            note = fn()
        except Exception:  # report every failing check, not just the first
            failed += 1
            print(f"FAILED {fn.__name__}\n{traceback.format_exc()}")
        else:
            passed += 1
            print(f"ok {fn.__name__}" + (f" ({note})" if note else ""))
    print(f"smoke {keras.backend.backend()}: {passed} passed, {failed} failed")
    return failed


if __name__ == "__main__":
    sys.exit(main())
