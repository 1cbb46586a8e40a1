"""StepSeeds: draws keyed by (seed, step), independent of what ran before."""

import keras
import numpy as np

from keras_hiri.training.seeds import StepSeeds, zero_after
from tests.helpers import to_numpy


def _draw(generator):
    return to_numpy(keras.random.uniform((4,), seed=generator))


def test_draws_depend_only_on_seed_and_step():
    a, b = keras.random.SeedGenerator(0), keras.random.SeedGenerator(0)
    seeds_a, seeds_b = StepSeeds(5, [a]), StepSeeds(5, [b])
    seeds_a.key(keras.ops.convert_to_tensor(3))
    first = _draw(a)
    for _ in range(3):  # b has drawn before: keying resets it
        _draw(b)
    seeds_b.key(keras.ops.convert_to_tensor(3))
    np.testing.assert_array_equal(_draw(b), first)
    seeds_a.key(keras.ops.convert_to_tensor(4))
    assert not np.array_equal(_draw(a), first)
    other = StepSeeds(6, [a])
    other.key(keras.ops.convert_to_tensor(3))
    assert not np.array_equal(_draw(a), first)


def test_generators_of_one_step_draw_different_streams():
    a, b = keras.random.SeedGenerator(0), keras.random.SeedGenerator(0)
    StepSeeds(5, [a, b]).key(keras.ops.convert_to_tensor(0))
    assert not np.array_equal(_draw(a), _draw(b))


def test_zero_after_is_zero():
    assert int(to_numpy(zero_after(np.ones((2, 3), "float32")))) == 0
    assert int(to_numpy(zero_after(np.full((2,), np.nan, "float32")))) == 0
