"""PyTorch ``state_dict`` <-> keras_hiri weights, by a documented timm-style scheme.

Naming scheme (what a PyTorch HIRI-ViT must call its tensors):

* the key is the path of module attributes, joined by dots: ``stem.hi_dw``,
  ``stages.<i>.downsample.conv1``, ``stages.<i>.blocks.<j>.attn.kv``,
  ``stages.<i>.norm``, ``head.attn.q``, ``head_norm``, ``fc`` (the classifier);
  stage and block indices start at 0; inside a block the attribute names are
  those of the Keras layer (``norm1``, ``attn.q``, ``attn.kv``, ``attn.proj``,
  ``cffn.fc1``, ``cffn.dw``, ``cffn.fc2``, ``lo_dw``, ``lo_bn``, ...);
* suffixes: ``.weight`` / ``.bias`` for convolutions and linear layers,
  ``.weight`` / ``.bias`` / ``.running_mean`` / ``.running_var`` for BatchNorm
  (``num_batches_tracked`` is accepted and ignored), ``.weight`` / ``.bias`` for
  LayerNorm;
* layouts (PyTorch's): conv ``(out, in, kh, kw)``, depthwise ``(C, 1, kh, kw)``,
  linear ``(out, in)`` (a ``(out, in, 1, 1)`` 1x1 conv is accepted for a Keras
  ``Dense``), norms ``(C,)``.

``load_state_dict`` checks that every tensor is used exactly once with the right
shape and that every Keras weight is filled, before assigning anything.
"""


import keras
import numpy as np

from keras_hiri import naming
from keras_hiri.layers.composite import CompositeLayer, sublayers


def _top_key(name):
    """The PyTorch module path of a top-level layer (``None``: holds no weights
    of the scheme). Stage and block indices start at 0 there."""
    kind, stage, block = naming.parse(name)
    if kind in ("downsample", "norm"):
        return f"stages.{stage - 1}.{kind}"
    if kind == "block":
        return f"stages.{stage - 1}.blocks.{block - 1}"
    if name == naming.CLASSIFIER:
        return "fc"
    if name in (naming.STEM, naming.HEAD, naming.HEAD_NORM):
        return name
    return None


def _children(layer):
    """``(attribute name, sub-layer)`` of a composite layer.

    Every keras_hiri composite names its sub-layers ``f"{self.name}_{attr}"``,
    so the attribute name is the sub-layer's name without the parent's prefix.
    """
    for child in sublayers(layer):
        yield child.name.removeprefix(f"{layer.name}_"), child


def _leaves(prefix, layer):
    """``(torch module path, leaf layer)`` for every weight-holding leaf layer."""
    if not isinstance(layer, CompositeLayer):
        if layer.weights:
            yield prefix, layer
        return
    for attr, child in _children(layer):
        yield from _leaves(f"{prefix}.{attr}", child)


def _suffix(layer, variable_index):
    """The PyTorch key suffix of ``layer.weights[variable_index]``."""
    if isinstance(layer, (keras.layers.Conv2D, keras.layers.DepthwiseConv2D, keras.layers.Dense)):
        return ("weight", "bias")[variable_index]
    if isinstance(layer, keras.layers.BatchNormalization):
        return ("weight", "bias", "running_mean", "running_var")[variable_index]
    if isinstance(layer, keras.layers.LayerNormalization):
        return ("weight", "bias")[variable_index]
    raise TypeError(f"No PyTorch mapping for layer {layer.name} ({type(layer).__name__})")


def _to_torch(layer, variable_index, value):
    """Keras value -> PyTorch layout (kernels transposed; everything else as is)."""
    if variable_index != 0:
        return value
    if isinstance(layer, keras.layers.DepthwiseConv2D):
        return value.transpose(2, 3, 0, 1)
    if isinstance(layer, keras.layers.Conv2D):
        return value.transpose(3, 2, 0, 1)
    if isinstance(layer, keras.layers.Dense):
        return value.T
    return value


def _from_torch(layer, variable, tensor):
    """PyTorch tensor -> Keras layout for ``variable`` of ``layer``."""
    tensor = np.asarray(tensor)
    if variable.path.endswith("kernel"):
        if isinstance(layer, keras.layers.DepthwiseConv2D):
            return tensor.transpose(2, 3, 0, 1)
        if isinstance(layer, keras.layers.Conv2D):
            return tensor.transpose(2, 3, 1, 0)
        if isinstance(layer, keras.layers.Dense):
            if tensor.ndim == 4 and tensor.shape[2:] == (1, 1):
                tensor = tensor[:, :, 0, 0]
            return tensor.T
    return tensor


def mapping(model):
    """``{torch key: (layer, variable index)}`` for every weight of ``model``."""
    result = {}
    for top in model.layers:
        key = _top_key(top.name)
        if key is None:
            if top.weights:
                raise ValueError(f"Layer {top.name!r} has weights but no PyTorch name.")
            continue
        for path, leaf in _leaves(key, top):
            for i in range(len(leaf.weights)):
                result[f"{path}.{_suffix(leaf, i)}"] = (leaf, i)
    return result


def to_state_dict(model):
    """The model's weights as a PyTorch-layout ``{key: numpy array}``."""
    out = {}
    for key, (layer, index) in mapping(model).items():
        value = _to_torch(layer, index, keras.ops.convert_to_numpy(layer.weights[index]))
        out[key] = np.ascontiguousarray(value)
    return out


IGNORED_SUFFIXES = (".num_batches_tracked",)


def load_state_dict(model, state_dict):
    """Assigns a PyTorch ``state_dict`` to ``model``; all-or-nothing.

    Raises:
        ValueError: listing unused, missing and mis-shaped tensors.
    """
    targets = mapping(model)
    state = {
        k: (v.detach().cpu().numpy() if hasattr(v, "detach") else np.asarray(v))
        for k, v in state_dict.items()
        if not k.endswith(IGNORED_SUFFIXES)
    }
    unused = sorted(set(state) - set(targets))
    missing = sorted(set(targets) - set(state))
    values, bad_shapes = {}, []
    for key in sorted(set(state) & set(targets)):
        layer, index = targets[key]
        variable = layer.weights[index]
        value = _from_torch(layer, variable, state[key])
        if tuple(value.shape) != tuple(variable.shape):
            bad_shapes.append(f"{key}: {tuple(state[key].shape)} -> Keras {tuple(variable.shape)}")
        values[key] = value
    if unused or missing or bad_shapes:
        raise ValueError(
            "state_dict does not match the model: "
            f"{len(unused)} unused ({unused[:5]}), {len(missing)} missing ({missing[:5]}), "
            f"{len(bad_shapes)} with the wrong shape ({bad_shapes[:5]}). Nothing was loaded."
        )
    for key, value in values.items():
        layer, index = targets[key]
        variable = layer.weights[index]
        variable.assign(value.astype(variable.dtype))
    return model


def read_state_dict(path):
    """Reads a ``.pt``/``.pth`` (``torch.load(weights_only=True)``) or ``.safetensors`` file."""
    if path.endswith(".safetensors"):
        from safetensors.numpy import load_file

        return load_file(path)
    import torch

    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    return state
