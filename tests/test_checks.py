import math

import numpy as np
import pytest

from keras_hiri import checks

pytestmark = pytest.mark.backend_independent


@pytest.mark.parametrize("value", [1, 7, np.int64(3)])
def test_int_at_least_takes_ints(value):
    checks.int_at_least("n", value)


@pytest.mark.parametrize("value,least", [(0, 1), (-1, 0), (2.0, 1), (True, 0), ("3", 1), (None, 1)])
def test_int_at_least_names_the_bound_and_the_value(value, least):
    with pytest.raises(ValueError, match=f"^Owner: n must be an int >= {least}. Received: n={value!r}$"):
        checks.int_at_least("n", value, least, owner="Owner")


@pytest.mark.parametrize("value,bounds,allowed", [
    (1.0, dict(low=0, high=1, high_open=True), r"in \[0, 1\)"),
    (0, dict(low=0, high=1, low_open=True, high_open=True), r"in \(0, 1\)"),
    (-0.5, dict(), "a number >= 0"),
    (0.0, dict(low_open=True), "a number > 0"),
    (math.nan, dict(), "a number >= 0"),
    (False, dict(low=0, high=1), r"in \[0, 1\]"),
    ("0.5", dict(low=0, high=1), r"in \[0, 1\]"),
])
def test_number_in_names_the_interval(value, bounds, allowed):
    with pytest.raises(ValueError, match=f"^rate must be {allowed}. Received: rate="):
        checks.number_in("rate", value, **bounds)


def test_number_in_takes_both_closed_ends_and_numpy_numbers():
    for value in (0, 1, 0.5, np.float32(0.25)):
        checks.number_in("rate", value, 0, 1)


def test_flag_and_heads():
    checks.flag("f", True)
    checks.flag("f", np.bool_(False))
    with pytest.raises(ValueError, match="^f must be True or False. Received: f='yes'$"):
        checks.flag("f", "yes")
    checks.heads(64, 4)
    with pytest.raises(ValueError, match="^Attn: dim must be divisible by num_heads. Received: dim=10, num_heads=3$"):
        checks.heads(10, 3, owner="Attn")
    with pytest.raises(ValueError, match="num_heads must be an int >= 1"):
        checks.heads(8, 0)
