"""AdamW for fine-tuning: layer-wise learning-rate decay and no weight decay on
1-D weights, the parameter groups of BEiT and timm's ``param_groups_layer_decay``.

Keras optimizers have one learning rate; :class:`LayerDecayAdamW` multiplies it
per variable (``lr_multipliers``, keyed by ``variable.path``), for the Adam step
and for the decoupled weight decay alike, as timm's per-group ``lr_scale`` does.
:func:`layer_decay_multipliers` numbers a HIRI-ViT's layers the way timm numbers
a ViT's: the stem (and input layers) 0, the blocks 1..N in order (a stage's
downsampling shares its first block's number, its closing norm its last
block's), the head N + 1; a layer numbered ``i`` learns at
``decay ** (N + 1 - i)`` times the base rate.
"""

import re

import keras
from keras import ops

from keras_hiri import checks, naming
from keras_hiri.layers import register


def layer_ids(model):
    """``({variable.path: layer number}, N + 1)`` for a HIRI-ViT ``model`` (its
    student, or a keras-hub backbone's); layers the builder did not name (a
    keras-hub task's head) count as head."""
    parsed = [(naming.parse(layer.name), layer) for layer in model.layers]
    blocks = sorted((stage, index) for (kind, stage, index), _ in parsed if kind == "block")
    number = {key: i + 1 for i, key in enumerate(blocks)}
    first = {stage: number[(stage, index)] for stage, index in reversed(blocks)}
    last = {stage: number[(stage, index)] for stage, index in blocks}
    head = len(blocks) + 1
    ids = {}
    for (kind, stage, index), layer in parsed:
        layer_id = {"block": number.get((stage, index)), "downsample": first.get(stage),
                    "resize": first.get(stage), "norm": last.get(stage)}.get(kind)
        if kind in ("stem", "preprocessing", "layout"):
            layer_id = 0
        for variable in layer.weights:
            ids[variable.path] = head if layer_id is None else layer_id
    return ids, head


def layer_decay_multipliers(model, decay):
    """``{variable.path: decay ** (N + 1 - layer number)}`` (see the module docstring)."""
    checks.number_in("layer_decay", decay, 0, 1, low_open=True)
    ids, head = layer_ids(model)
    return {path: float(decay ** (head - layer_id)) for path, layer_id in ids.items()}


def variable_path(variable):
    """The Keras path of the variable ``update_step`` receives: a Keras
    variable's ``path``, or, where TensorFlow's optimizer hands over the
    ``tf.Variable`` itself, its name (the path, plus ``:0`` and under a
    distribution strategy a ``/replica_N`` part)."""
    path = getattr(variable, "path", None)
    return path if path is not None else re.sub(r"(/replica_\d+)?:\d+$", "", variable.name)


@register
class LayerDecayAdamW(keras.optimizers.Adam):
    """AdamW whose learning rate is scaled per variable, weight decay included.

    Args:
        learning_rate: the base rate (a float or a schedule).
        weight_decay: decoupled weight decay, applied (times the variable's
            rate) to every variable of more than one dimension; biases and
            norm scales/offsets are left out, as in timm.
        lr_multipliers: ``{variable.path: multiplier}``; missing paths: 1.
        **kwargs: ``keras.optimizers.Adam``'s other arguments.
    """

    def __init__(self, learning_rate=0.001, weight_decay=0.05, lr_multipliers=None, **kwargs):
        kwargs.pop("weight_decay", None)
        super().__init__(learning_rate=learning_rate, **kwargs)
        checks.number_in("weight_decay", weight_decay)
        self.decoupled_weight_decay = float(weight_decay)
        self.lr_multipliers = dict(lr_multipliers or {})

    def update_step(self, gradient, variable, learning_rate):
        scale = self.lr_multipliers.get(variable_path(variable), 1.0)
        learning_rate = ops.cast(learning_rate, variable.dtype) * scale
        if self.decoupled_weight_decay and len(variable.shape) > 1:
            # Before the Adam step, as keras.optimizers.AdamW applies it.
            variable.assign(variable - variable * self.decoupled_weight_decay * learning_rate)
        super().update_step(gradient, variable, learning_rate)

    def get_config(self):
        config = super().get_config()
        config.update(weight_decay=self.decoupled_weight_decay, lr_multipliers=self.lr_multipliers)
        return config
