"""Inference re-parameterisation: fold BatchNorm into the convolution before it.

In inference mode a BatchNorm is a per-channel affine map
``y = s * x + t`` with ``s = gamma / sqrt(var + eps)`` and
``t = beta - mean * s``. When ``x`` is the output of a convolution (or the
sum of several, as in the HR-stem's ``out_bn``), ``s`` scales the kernels'
output channels and ``t`` goes into one bias, so the BN disappears.

What folds (every BN right after a convolution):

* HR-stem: ``bn``, ``hi_bn``, ``lo_bn1``, ``lo_bn2`` and ``out_bn`` (after
  ``hi_conv + lo_conv3``, folded into both);
* HR block: ``lo_bn`` (after the strided depthwise conv);
* IRDS-a: ``bn1``, ``bn2``, ``short_bn``; IRDS-b: ``bn1`` (and its output norm
  when it is a BN); Conv-/ViT-stem and plain downsampling likewise.

What does not: a BN *in front of* a zero-padded convolution (the HR and CFFN
blocks' pre-norms, the stage norms), because folding it forward would change
the padded border; and LayerNorms.
"""

import keras
import numpy as np

from keras_hiri.layers.composite import CompositeLayer


def bn_affine(bn):
    """``(s, t)`` per channel, in float64, such that ``bn(x, training=False) == s * x + t``."""
    s = (_float64(bn.moving_variance) + bn.epsilon) ** -0.5
    if bn.scale:
        s = s * _float64(bn.gamma)
    t = -_float64(bn.moving_mean) * s
    if bn.center:
        t = t + _float64(bn.beta)
    return s, t


def scaled_conv(conv, s, t):
    """Kernel and bias (float64) of ``s * conv(x) + t`` (``conv``: a ``Conv2D``
    or ``DepthwiseConv2D``; ``s``, ``t`` per output channel)."""
    scale = s
    if isinstance(conv, keras.layers.DepthwiseConv2D):  # output channel c * m + j is kernel[..., c, j]
        scale = np.reshape(s, tuple(conv.kernel.shape[2:]))
    bias = _float64(conv.bias) * s + t if conv.use_bias else t
    return _float64(conv.kernel) * scale, bias


def _float64(value):
    return np.asarray(value, "float64")


def _key(variable):
    """``"<sub-layer name>/<variable name>"``: unique inside one of our layers
    (sub-layer names carry the layer's name), and unlike ``variable.path`` the
    same in a model revived from its config."""
    return "/".join(variable.path.split("/")[-2:])


def _folded_values(source, target):
    """``{variable key: value}`` for every weight of ``target`` (folded twin of ``source``)."""
    values, consumed = {}, set()
    for conv_names, bn_name in source.bn_folds():
        bn = getattr(source, bn_name)
        if not isinstance(bn, keras.layers.BatchNormalization):
            raise ValueError(f"{source.name}.{bn_name} is not a BatchNormalization: {bn!r}")
        s, t = bn_affine(bn)
        consumed.update(_key(v) for v in bn.weights)
        for i, conv_name in enumerate(conv_names):
            conv, new_conv = getattr(source, conv_name), getattr(target, conv_name)
            kernel, bias = scaled_conv(conv, s, t if i == 0 else np.zeros_like(t))
            values[_key(new_conv.kernel)] = kernel
            values[_key(new_conv.bias)] = bias
            consumed.update(_key(v) for v in conv.weights)
    for variable in source.weights:
        if _key(variable) not in consumed:
            values[_key(variable)] = variable
    return values


def _fold_layer(source, target):
    values = _folded_values(source, target)
    variables = {_key(v): v for v in target.weights}
    if set(values) != set(variables):
        raise RuntimeError(
            f"Folding {source.name!r}: weight layouts do not match. Missing: "
            f"{sorted(set(variables) - set(values))}; unexpected: "
            f"{sorted(set(values) - set(variables))}"
        )
    for path, value in values.items():
        variable = variables[path]
        variable.assign(keras.ops.cast(np.asarray(value), variable.dtype))


def foldable_layers(model):
    """The layers of ``model`` that :func:`fold_batchnorm` would change."""
    return [
        layer for layer in model.layers
        if isinstance(layer, CompositeLayer) and not layer.fold_bn and layer.bn_folds()
    ]


def _functional_config(model):
    """The config of a functional (or Sequential) ``keras.Model``: the one
    that lists its layers, which folding edits; ``None`` for anything else."""
    if not isinstance(model, keras.Model):
        return None
    try:
        config = model.get_config()
    except NotImplementedError:  # a subclassed model without get_config
        return None
    return config if isinstance(config, dict) and "layers" in config else None


def fold_batchnorm(model):
    """Returns an inference copy of ``model`` with every BN after a conv folded.

    The copy has the same layer names, inputs and outputs; in it those BNs are
    ``Identity`` layers and the convolutions carry the BN's scale and shift.
    Outputs equal the original's in inference mode (``training=False``) up to
    float rounding (the fold is computed in float64). ``model`` is unchanged.

    The copy is for inference (and export): training it would train
    convolutions without their BatchNorms.

    Args:
        model: a functional Keras model built by :func:`keras_hiri.HiriViT`
            (or any functional model whose layers include this library's
            stems, blocks and downsampling layers).

    Returns:
        A new model of the same class.

    Raises:
        ValueError: ``model`` is not a functional ``keras.Model``, or has no
            BatchNorm left to fold (e.g. it was folded already).
    """
    config = _functional_config(model)
    if config is None:
        raise ValueError(
            "fold_batchnorm needs a functional keras.Model (e.g. from keras_hiri.HiriViT). "
            f"Received: {type(model).__name__}"
        )
    targets = {layer.name for layer in foldable_layers(model)}
    if not targets:
        raise ValueError(
            f"Model {model.name!r} has no BatchNormalization after a convolution to fold "
            "(was it folded already?)."
        )
    for entry in config["layers"]:
        if entry["config"]["name"] in targets:
            entry["config"]["fold_bn"] = True
    folded = model.__class__.from_config(config)
    for layer in model.layers:
        twin = folded.get_layer(layer.name)
        if layer.name in targets:
            _fold_layer(layer, twin)
        else:
            twin.set_weights(layer.get_weights())
    return folded
