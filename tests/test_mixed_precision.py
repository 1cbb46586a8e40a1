"""mixed_bfloat16 / mixed_float16: train and infer on every backend, float32 head."""

import keras
import numpy as np
import pytest

import keras_hiri
from keras_hiri.training.state import build_optimizer
from tests.helpers import infer, to_numpy
from tests.tiny import TINY, TINY_CLASSES, images, randomize_batchnorm_statistics

SHAPE = (64, 64, 3)
POLICIES = ["mixed_bfloat16", "mixed_float16"]
# bfloat16 keeps 8 bits of mantissa, float16 11: relative error of one op ~4e-3 / 5e-4.
TOLERANCE = {"mixed_bfloat16": 0.1, "mixed_float16": 0.02}


@pytest.fixture
def policy(request):
    with _global_policy(request.param):
        yield request.param


class _global_policy:
    def __init__(self, name):
        self.name = name

    def __enter__(self):
        self.previous = keras.config.dtype_policy()
        keras.config.set_dtype_policy(self.name)

    def __exit__(self, *exc):
        keras.config.set_dtype_policy(self.previous)


def _model(**kwargs):
    return keras_hiri.HiriViT(TINY, input_shape=SHAPE, classes=TINY_CLASSES, **kwargs)


@pytest.mark.parametrize("policy", POLICIES, indirect=True)
def test_inference_is_close_to_float32_and_head_is_float32(policy):
    model = _model(classifier_activation=None)
    assert model.get_layer("stage4_block1").compute_dtype == policy.removeprefix("mixed_")
    assert model.get_layer("stage4_block1").variable_dtype == "float32"
    assert model.get_layer("predictions").compute_dtype == "float32"
    randomize_batchnorm_statistics(model)
    weights = model.get_weights()
    with _global_policy("float32"):
        reference = _model(classifier_activation=None)
    reference.set_weights(weights)
    x = images(2, SHAPE)
    logits = infer(model, x)
    expected = infer(reference, x)
    assert logits.dtype == np.float32
    assert np.isfinite(logits).all()
    # Compare the pooled features too (larger than the fresh head's logits).
    features = keras.Model(model.inputs, model.get_layer("head").output)
    ref_features = keras.Model(reference.inputs, reference.get_layer("head").output)
    a = infer(features, x).astype("float32")
    b = infer(ref_features, x)
    scale = np.abs(b).max()
    assert np.abs(a - b).max() <= TOLERANCE[policy] * scale, (np.abs(a - b).max(), scale)
    assert np.abs(logits - expected).max() <= TOLERANCE[policy] * max(np.abs(expected).max(), 1e-3)


# One fit per policy (a traced fit is the costliest thing a test does): plain
# training under mixed_float16 (the loss-scaling path), EMA distillation under
# mixed_bfloat16.
@pytest.mark.parametrize("policy", ["mixed_float16"], indirect=True)
def test_fit_step_gives_finite_loss_and_moves_weights(policy):
    model = _model(drop_path_rate=0.1)
    model.compile(
        optimizer=keras.optimizers.AdamW(1e-3),
        loss="sparse_categorical_crossentropy",
    )
    assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
    build_optimizer(model)
    before = to_numpy(model.get_layer("predictions").kernel).copy()
    x = images(4, SHAPE)
    y = np.arange(4) % TINY_CLASSES
    history = model.fit(x, y, batch_size=4, epochs=2, verbose=0)
    assert all(np.isfinite(history.history["loss"]))
    assert not np.allclose(to_numpy(model.get_layer("predictions").kernel), before)
    assert model.get_layer("predictions").kernel.dtype == "float32"


@pytest.mark.parametrize("policy", ["mixed_bfloat16"], indirect=True)
def test_distillation_trains_under_mixed_precision(policy):
    student = _model(drop_path_rate=0.1)
    trainer = keras_hiri.EMADistillation(student, alpha=0.5, seed=0)
    trainer.compile(optimizer=keras.optimizers.AdamW(1e-3))
    before = to_numpy(student.get_layer("predictions").kernel).copy()
    x = images(4, SHAPE)
    y = np.arange(4) % TINY_CLASSES
    history = trainer.fit(x, y, batch_size=4, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"]).all()
    assert not np.allclose(to_numpy(student.get_layer("predictions").kernel), before)
    assert trainer.teacher.get_layer("predictions").kernel.dtype == "float32"
