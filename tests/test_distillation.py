import keras
import numpy as np
import pytest

import keras_hiri
from keras_hiri.training import mixing
from keras_hiri.training.distillation import EMADistillation
from tests.helpers import to_numpy
from tests.tiny import TINY, TINY_CLASSES, images, tiny_model

SHAPE = (64, 72, 3)


def _trainer(**kwargs):
    student = tiny_model(input_shape=SHAPE)
    kwargs.setdefault("seed", 3)
    return EMADistillation(student, **kwargs)


def _data(n=8, seed=0):
    rng = np.random.default_rng(seed)
    return images(n, SHAPE, seed=seed), rng.integers(0, TINY_CLASSES, n)


class _RecordStudent(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.states = []

    def on_train_batch_end(self, batch, logs=None):
        self.states.append([to_numpy(w).copy() for w in self.model.student.weights])


@pytest.mark.parametrize("epochs, batch_size", [(1, 4), (2, 4)])
def test_teacher_is_ema_of_student_after_every_step(epochs, batch_size):
    """Recomputed independently in float64 from the student's full state
    (trainable weights and BatchNorm statistics) recorded after each optimizer
    step: ``t <- m t + (1 - m) s``, the last step included, when ``fit`` returns."""
    m = 0.8
    trainer = _trainer(ema_momentum=m, alpha=0.5)
    trainer.compile(optimizer=keras.optimizers.SGD(0.5))
    start = [to_numpy(w).astype("float64") for w in trainer.student.weights]
    np.testing.assert_array_equal(to_numpy(trainer.teacher.weights[0]), start[0])
    recorder = _RecordStudent()
    x, y = _data(12)
    trainer.fit(x, y, batch_size=batch_size, epochs=epochs, shuffle=False, verbose=0, callbacks=[recorder])
    steps = epochs * 3
    assert len(recorder.states) == steps
    expected = start
    for state in recorder.states:
        expected = [m * e + (1 - m) * s.astype("float64") for e, s in zip(expected, state)]
    teacher = [to_numpy(w) for w in trainer.teacher.weights]
    names = [w.path for w in trainer.student.weights]
    moving = [i for i, name in enumerate(names) if "moving_mean" in name]
    assert moving and any(not np.allclose(start[i], recorder.states[-1][i]) for i in moving)
    changed = 0
    for name, e, t, s0 in zip(names, expected, teacher, start):
        np.testing.assert_allclose(t, e, rtol=1e-4, atol=1e-6, err_msg=name)
        changed += not np.allclose(t, s0)
    assert changed > len(start) // 2  # the teacher really moved
    assert int(to_numpy(trainer.steps_seen)) == steps == int(to_numpy(trainer.ema.folded))


def test_call_folds_the_last_step_once_and_compute_loss_counts():
    trainer = _trainer(alpha=0.5, ema_momentum=0.5)
    x, y = _data(4)
    teacher = [to_numpy(w).copy() for w in trainer.teacher.weights]
    first = trainer(x, training=True)
    second = trainer(x, training=True)
    np.testing.assert_array_equal(to_numpy(first["logits"]), to_numpy(second["logits"]))
    np.testing.assert_array_equal(to_numpy(first["lam"]), to_numpy(second["lam"]))
    assert int(to_numpy(trainer.steps_seen)) == 0 == int(to_numpy(trainer.ema.folded))
    for w, t in zip(trainer.teacher.weights, teacher):  # step 1 has nothing to fold
        np.testing.assert_array_equal(to_numpy(w), t)
    trainer.compute_loss(x, y, first)
    assert int(to_numpy(trainer.steps_seen)) == 1
    # The "optimizer step": the state the next call folds, once.
    trainer.student.weights[0].assign(trainer.student.weights[0] + 1.0)
    third = trainer(x, training=True)
    assert int(to_numpy(trainer.ema.folded)) == 1
    np.testing.assert_allclose(to_numpy(trainer.teacher.weights[0]), teacher[0] + 0.5, rtol=1e-6)
    # The next step's draws differ (keyed by the counter compute_loss advanced).
    assert not np.allclose(to_numpy(first["logits"]), to_numpy(third["logits"]))
    trainer(x, training=True)  # a second call at the same step folds nothing more
    np.testing.assert_allclose(to_numpy(trainer.teacher.weights[0]), teacher[0] + 0.5, rtol=1e-6)


def test_alpha_one_is_plain_mixed_label_cross_entropy():
    trainer = _trainer(alpha=1.0)
    x, y = _data(4)
    out = trainer(x, training=True)
    loss = to_numpy(trainer.compute_loss(x, y, out))
    target = to_numpy(trainer.mix_labels(y, out))
    logits = to_numpy(out["logits"])
    log_probs = logits - np.log(np.exp(logits - logits.max(-1, keepdims=True)).sum(-1, keepdims=True)) - logits.max(-1, keepdims=True)
    assert loss == pytest.approx(float(np.mean(-(target * log_probs).sum(-1))), rel=1e-5)
    # And the mixed labels are lambda * y_a + (1 - lambda) * y_b of smoothed one-hots.
    lam = float(to_numpy(out["lam"]))
    smooth = np.eye(TINY_CLASSES)[y] * 0.9 + 0.1 / TINY_CLASSES
    np.testing.assert_allclose(target, lam * smooth + (1 - lam) * smooth[::-1], atol=1e-6)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_cutmix_mask_and_lambda_agree_between_images_and_teacher_maps(seed):
    trainer = _trainer(mixup_alpha=0.0, cutmix_alpha=1.0, seed=seed)
    mix = trainer.sample_mix()
    lam = float(to_numpy(mix["lam"]))
    pixel = to_numpy(mixing.mask(mix, SHAPE[:2], *SHAPE[:2]))[0, ..., 0]
    assert set(np.unique(pixel)) <= {0.0, 1.0}
    assert pixel.mean() == pytest.approx(lam, abs=1e-6)
    # The images really are pasted along that mask.
    x, _ = _data(2, seed)
    mixed = to_numpy(mixing.mix_images(x, mix))
    np.testing.assert_allclose(mixed[0], np.where(pixel[..., None] == 1, x[0], x[1]), atol=1e-4)
    # The stage-5 grid's mask is the pixel mask averaged over each cell.
    grid = trainer.teacher_maps.output.shape[1:3]
    coarse = to_numpy(mixing.mask(mix, SHAPE[:2], *grid))[0, ..., 0]
    assert coarse.mean() == pytest.approx(lam, abs=1e-5)
    fine = to_numpy(mixing.mask(mix, SHAPE[:2], SHAPE[0] * 2, SHAPE[1] * 2))[0, ..., 0]
    np.testing.assert_allclose(fine[::2, ::2], pixel, atol=1e-6)
    # y_hat of constant maps p_a, p_b is lambda * p_a + (1 - lambda) * p_b.
    maps = np.zeros((2, *grid, TINY_CLASSES), "float32")
    maps[0, ..., 0], maps[1, ..., 1] = 1, 1
    y_hat = to_numpy(mixing.mix_maps(maps, mix, SHAPE[:2]))
    assert y_hat[0, 0] == pytest.approx(lam, abs=1e-5)
    assert y_hat[0, 1] == pytest.approx(1 - lam, abs=1e-5)


def test_mixup_uses_lambda_everywhere():
    trainer = _trainer(mixup_alpha=0.8, cutmix_alpha=0.0)
    mix = trainer.sample_mix()
    lam = float(to_numpy(mix["lam"]))
    assert not bool(to_numpy(mix["cutmix"]))
    x, _ = _data(2)
    np.testing.assert_allclose(
        to_numpy(mixing.mix_images(x, mix)), lam * x + (1 - lam) * x[::-1], rtol=1e-5, atol=1e-3
    )


def test_teacher_maps_are_per_position_probabilities():
    trainer = _trainer()
    maps = to_numpy(trainer.teacher_maps(images(2, SHAPE), training=False))
    assert maps.shape == (2, 1, 2, TINY_CLASSES)  # 64x72 -> stage-5 grid 1x2
    np.testing.assert_allclose(maps.sum(-1), 1.0, atol=1e-5)


def test_fit_lowers_loss_and_evaluate_uses_student():
    """A learnable toy problem: class = which colour channel dominates."""
    rng = np.random.default_rng(0)
    n = 48
    y = rng.integers(0, 3, n)
    x = rng.uniform(0, 60, (n, *SHAPE)).astype("float32")
    for i, c in enumerate(y):
        x[i, ..., c] += 180
    student = keras_hiri.HiriViT(TINY, input_shape=SHAPE, classes=3)
    trainer = EMADistillation(student, alpha=0.5, ema_momentum=0.9, seed=0, label_smoothing=0.0)
    trainer.compile(optimizer=keras.optimizers.AdamW(3e-3), metrics=["accuracy"])
    calls = []  # Python runs once per trace (TensorFlow, JAX), once per step (PyTorch)
    compute_metrics = trainer.compute_metrics
    trainer.compute_metrics = lambda *a, **k: calls.append(1) or compute_metrics(*a, **k)
    history = trainer.fit(x, y, batch_size=16, epochs=6, verbose=0)
    losses = history.history["loss"]
    assert losses[-1] < losses[0]
    # The optimizer's slots and the metrics exist before the step is traced,
    # so TensorFlow traces it once, not twice (build_training_state).
    graph = keras.backend.backend() != "torch"
    assert len(calls) == (1 if graph else 6 * 3)
    result = trainer.evaluate(x, y, batch_size=16, verbose=0, return_dict=True)
    assert len(calls) == (2 if graph else 6 * 3 + 3)
    assert set(result) >= {"loss", "accuracy"}
    preds = to_numpy(trainer.predict(x[:4], verbose=0))
    np.testing.assert_allclose(preds, to_numpy(student(x[:4], training=False)), atol=1e-5)


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"alpha": 1.5}, r"alpha must be in \[0, 1\]. Received: alpha=1.5"),
        ({"ema_momentum": 1.0}, r"ema_momentum must be in \[0, 1\)"),
        ({"mixup_alpha": -1.0}, "mixup_alpha must be a number >= 0"),
        ({"cutmix_alpha": "1"}, "cutmix_alpha must be a number >= 0"),
    ],
)
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        _trainer(**kwargs)


def test_student_without_top_is_rejected():
    with pytest.raises(ValueError, match="include_top=True"):
        EMADistillation(tiny_model(include_top=False, input_shape=SHAPE))


def test_channels_first_student_is_refused_with_the_way_out():
    student = tiny_model(input_shape=(3, 64, 64), data_format="channels_first")
    with pytest.raises(ValueError, match="data_format='channels_last'"):
        EMADistillation(student)


def test_fit_on_a_grain_dataset_equals_fit_on_arrays():
    # A grain dataset has no known length: Keras' TensorFlow trainer ends its
    # epoch with a failed read, which must not count a step or fold the teacher.
    grain = pytest.importorskip("grain")  # CI installs it ([dev]); needs no TensorFlow
    x, y = _data(8)
    trainers = []
    for source in ("arrays", "grain"):
        keras.utils.set_random_seed(0)
        trainer = _trainer(alpha=0.5)
        trainer.compile(optimizer=keras.optimizers.SGD(0.1))
        if source == "grain":
            data = grain.MapDataset.source(list(zip(x, y))).batch(4)
            history = trainer.fit(data, epochs=1, verbose=0)
        else:
            history = trainer.fit(x, y, batch_size=4, epochs=1, shuffle=False, verbose=0)
        assert np.isfinite(history.history["loss"]).all()
        assert int(to_numpy(trainer.steps_seen)) == 2
        trainers.append(trainer)
    arrays, from_grain = trainers
    assert not np.array_equal(
        to_numpy(from_grain.teacher.weights[0]), to_numpy(from_grain.student.weights[0])
    )
    for a, b in zip(arrays.teacher.weights, from_grain.teacher.weights):
        np.testing.assert_allclose(to_numpy(a), to_numpy(b), rtol=1e-5, atol=1e-6)