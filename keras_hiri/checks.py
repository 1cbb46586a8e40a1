"""Argument checks: the one place that says what a valid count, size, ratio,
rate or flag is, and how a bad one is reported: a ``ValueError`` that names the
argument, what is allowed and the value received.

``owner`` (a class or function name) prefixes the message where the argument
alone would not say whose it is, e.g. ``"HRBlock: dim must be an int >= 1.
Received: dim=0"``.
"""

import math

import numpy as np

# The network's input rules (builder): total stride of the five stages, the
# smallest side it accepts, the default side with the top.
TOTAL_STRIDE = 64
MIN_SIZE = 64
DEFAULT_SIZE = 448
DATA_FORMATS = ("channels_last", "channels_first")
POOLINGS = (None, "avg", "max")


def image_data_format(data_format, owner=None):
    """``data_format``, with ``None`` read from ``keras.config.image_data_format()``;
    anything but ``"channels_last"`` / ``"channels_first"`` is a ValueError."""
    import keras

    if data_format is None:
        return keras.config.image_data_format()
    if data_format not in DATA_FORMATS:
        where = f"{owner}: " if owner else ""
        raise ValueError(
            f"{where}data_format must be one of {DATA_FORMATS} (or None for "
            f"keras.config.image_data_format()). Received: data_format={data_format!r}"
        )
    return data_format


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


def _model_input_shape(input_shape, channels_required, pin_late_grids, data_format):
    if len(input_shape) != 3:
        order = "(height, width, channels)" if data_format == "channels_last" else "(channels, height, width)"
        raise ValueError(
            f"input_shape must be {order} for data_format={data_format!r}. "
            f"Received: input_shape={input_shape}"
        )
    h, w, c = to_hwc(input_shape, data_format)
    if channels_required is not None and c != channels_required:
        raise ValueError(
            f"input_shape must have {channels_required} channels (RGB) when "
            "include_preprocessing=True or weights are loaded. "
            f"Received: input_shape={input_shape}"
        )
    if c is None or c < 1:
        raise ValueError(f"input_shape needs a positive channel count. Received: {input_shape}")
    for side in (h, w):
        if side is not None and (not isinstance(side, (int, np.integer)) or side < MIN_SIZE):
            raise ValueError(
                f"Input is too small for the five stages: each side must be an int "
                f">= {MIN_SIZE} (total stride {TOTAL_STRIDE}) or None. "
                f"Received: input_shape={input_shape}"
            )
    if pin_late_grids and (h is None or w is None):
        raise ValueError(
            "pin_late_grids=True needs a static input size (the late grids are "
            f"computed from it). Received: input_shape={input_shape}"
        )


def model_arguments(
    *, include_top, weights, input_tensor, input_shape, pooling, classes,
    classifier_activation, include_preprocessing, drop_path_rate, pin_late_grids, data_format,
    reset_head=False,
):
    """Checks every argument of :func:`keras_hiri.HiriViT` (reads no file);
    returns the full input shape and the data format."""
    import keras

    flags = dict(include_top=include_top, include_preprocessing=include_preprocessing,
                 pin_late_grids=pin_late_grids, reset_head=reset_head)
    for name, value in flags.items():
        flag(name, value)
    data_format = image_data_format(data_format)
    if pooling not in POOLINGS:
        raise ValueError(f"pooling must be one of {POOLINGS}. Received: pooling={pooling!r}")
    if include_top:
        int_at_least("classes", classes)
    if classifier_activation is not None:
        try:
            keras.activations.get(classifier_activation)
        except (ValueError, TypeError) as e:
            raise ValueError(
                "classifier_activation must be None, a Keras activation name such as "
                f"'softmax', or a callable. Received: {classifier_activation!r}"
            ) from e
    number_in("drop_path_rate", drop_path_rate, 0, 1, high_open=True)
    if input_tensor is not None and not keras.backend.is_keras_tensor(input_tensor):
        raise ValueError(
            "input_tensor must be a Keras tensor (from keras.Input or a layer). "
            f"Received: {type(input_tensor).__name__}"
        )
    if input_shape is None and input_tensor is not None:
        input_shape = tuple(input_tensor.shape[1:])
    if input_shape is None:
        side = DEFAULT_SIZE if include_top else None
        input_shape = (side, side, 3) if data_format == "channels_last" else (3, side, side)
    input_shape = tuple(input_shape)
    # As keras.applications: a backbone (no top, no weights) takes any channel
    # count and then skips the RGB normalisation.
    needs_rgb = 3 if weights is not None or (include_preprocessing and include_top) else None
    _model_input_shape(input_shape, needs_rgb, pin_late_grids, data_format)
    return input_shape, data_format


def to_hwc(shape, data_format):
    """``(height, width, channels)`` of an input shape given in ``data_format``."""
    return tuple(shape) if data_format == "channels_last" else (*shape[1:], shape[0])
