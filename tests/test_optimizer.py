"""Layer-wise learning-rate decay: each group's rate, weight decay groups, config."""

import keras
import numpy as np
import pytest

from keras_hiri.training.optimizer import LayerDecayAdamW, layer_decay_multipliers, layer_ids
from keras_hiri.training.recipe import Recipe
from tests.helpers import to_numpy
from tests.tiny import TINY, tiny_model

DECAY = 0.5


def test_layer_numbers_follow_the_network():
    model = tiny_model(input_shape=(64, 64, 3))
    ids, head = layer_ids(model)
    blocks = sum(TINY.depths)
    assert head == blocks + 1
    by_layer = {}
    for layer in model.layers:
        for w in layer.weights:
            by_layer.setdefault(layer.name, set()).add(ids[w.path])
    assert by_layer["stem"] == {0}
    assert by_layer["stage1_block1"] == {1} and by_layer["stage1_norm"] == {1}
    assert by_layer["stage2_downsample"] == {2} == by_layer["stage2_block1"]
    assert by_layer["stage4_block2"] == {5} and by_layer["stage5_downsample"] == {6}
    assert by_layer["head"] == by_layer["predictions"] == by_layer["head_norm"] == {head}
    assert set(ids) == {w.path for w in model.weights}


def test_each_group_steps_at_its_rate_and_decays_only_matrices():
    """Adam's first step moves every element by lr * multiplier (|m / sqrt(v)| = 1
    after bias correction), and decoupled weight decay shrinks only >1-D weights."""
    model = tiny_model(input_shape=(64, 64, 3))
    multipliers = layer_decay_multipliers(model, DECAY)
    lr, wd = 1e-3, 0.1
    optimizer = LayerDecayAdamW(lr, weight_decay=0.0, lr_multipliers=multipliers, epsilon=1e-12)
    variables = model.trainable_variables
    optimizer.build(variables)
    for v in variables:  # from zero, each step is exact in float32
        v.assign(keras.ops.zeros(v.shape))
    before = [to_numpy(v).copy() for v in variables]
    optimizer.apply([keras.ops.ones(v.shape) for v in variables], variables)
    head = max(layer_ids(model)[0].values())
    rates = set()
    for v, b in zip(variables, before):
        step = b - to_numpy(v)
        np.testing.assert_allclose(step, lr * multipliers[v.path], rtol=1e-3, err_msg=v.path)
        rates.add(round(multipliers[v.path] / DECAY ** head, 6))
    assert rates == {float(2 ** k) for k in range(head + 1)}  # every group, stem 1/2**head .. head 1

    decayed = LayerDecayAdamW(lr, weight_decay=wd, lr_multipliers=multipliers)
    decayed.build(variables)
    for v in variables:
        v.assign(keras.ops.ones(v.shape))
    before = [to_numpy(v).copy() for v in variables]
    decayed.apply([keras.ops.zeros(v.shape) for v in variables], variables)  # the Adam step is 0
    for v, b in zip(variables, before):
        expected = b * (1 - wd * lr * multipliers[v.path]) if len(v.shape) > 1 else b
        np.testing.assert_allclose(to_numpy(v), expected, rtol=1e-6, atol=1e-9, err_msg=v.path)


def test_recipe_optimizer_and_config_round_trip():
    model = tiny_model(input_shape=(64, 64, 3))
    assert isinstance(Recipe().optimizer(10), keras.optimizers.AdamW)
    optimizer = Recipe(layer_decay=0.75).optimizer(10, model)
    assert isinstance(optimizer, LayerDecayAdamW)
    assert min(optimizer.lr_multipliers.values()) == pytest.approx(0.75 ** (sum(TINY.depths) + 1))
    revived = LayerDecayAdamW.from_config(optimizer.get_config())
    assert revived.lr_multipliers == optimizer.lr_multipliers
    assert revived.decoupled_weight_decay == optimizer.decoupled_weight_decay == 0.05
    with pytest.raises(ValueError, match="needs the model when layer_decay < 1"):
        Recipe(layer_decay=0.75).optimizer(10)


@pytest.mark.parametrize("decay", [0.0, 1.5, "0.7"])
def test_bad_layer_decay(decay):
    with pytest.raises(ValueError, match=r"layer_decay must be in \(0, 1\]"):
        Recipe(layer_decay=decay)
