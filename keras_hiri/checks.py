"""Argument checks: the one place that says what a valid count, size, ratio,
rate or flag is, and how a bad one is reported: a ``ValueError`` that names the
argument, what is allowed and the value received.

``owner`` (a class or function name) prefixes the message where the argument
alone would not say whose it is, e.g. ``"HRBlock: dim must be an int >= 1.
Received: dim=0"``.
"""

import math

import numpy as np


def _is_int(value):
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def _is_number(value):
    return isinstance(value, (int, float, np.number)) and not isinstance(value, (bool, np.bool_))


def _prefix(owner):
    return f"{owner}: " if owner else ""


def _fail(name, allowed, value, owner):
    raise ValueError(f"{_prefix(owner)}{name} must be {allowed}. Received: {name}={value!r}")


def int_at_least(name, value, least=1, owner=None):
    """``value`` must be an int (not a bool) ``>= least``."""
    if not _is_int(value) or value < least:
        _fail(name, f"an int >= {least}", value, owner)


def number_in(name, value, low=0.0, high=math.inf, *, low_open=False, high_open=False, owner=None):
    """``value`` must be a real number (not a bool) between ``low`` and ``high``,
    each end included unless ``low_open`` / ``high_open``."""
    inside = _is_number(value) and not math.isnan(value) and (
        (value > low if low_open else value >= low) and (value < high if high_open else value <= high))
    if not inside:
        if high == math.inf:
            allowed = f"a number {'>' if low_open else '>='} {low:g}"
        else:
            allowed = f"in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
        _fail(name, allowed, value, owner)


def flag(name, value, owner=None):
    """``value`` must be ``True`` or ``False`` (a NumPy bool too)."""
    if not isinstance(value, (bool, np.bool_)):
        _fail(name, "True or False", value, owner)


def heads(dim, num_heads, owner=None):
    """``dim`` and ``num_heads`` must be ints >= 1, ``num_heads`` dividing ``dim``."""
    int_at_least("dim", dim, owner=owner)
    int_at_least("num_heads", num_heads, owner=owner)
    if dim % num_heads:
        raise ValueError(
            f"{_prefix(owner)}dim must be divisible by num_heads. Received: dim={dim}, num_heads={num_heads}"
        )


def built_model(model, owner):
    """``model`` must be a built functional ``keras.Model`` (one with inputs);
    ``owner`` is the function that needs it."""
    import keras

    if not isinstance(model, keras.Model) or not getattr(model, "inputs", None):
        raise ValueError(
            f"{owner} needs a built functional keras.Model (e.g. from keras_hiri.HiriViT or a loaded .keras "
            f"file). Received: {type(model).__name__}"
        )
