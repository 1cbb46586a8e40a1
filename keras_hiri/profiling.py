"""Parameter and MAC counting from a built model.

``profile(model)`` traces one batch-1 forward pass with counting hooks on
every ``Conv2D``, ``DepthwiseConv2D`` and ``Dense`` sub-layer and on the
attention of every :class:`~keras_hiri.layers.blocks.MultiHeadSelfAttention`, and
reads the shapes they really see. The pass is symbolic
(``keras.Operation.compute_output_spec``: the backend's abstract tensors, no
arithmetic and no compiled kernels), so it costs the same on every backend
(HIRI-ViT-S@448: 2-4 s; an eager pass took 48 s on JAX, which compiles every
op it runs eagerly). MACs are multiply-accumulates of convolutions, dense layers
and the two attention matmuls (``Q K^T`` and ``A V``); biases, norms,
activations, pooling and resizing are not counted (the convention that
reproduces the paper's "GFLOPs", see ``docs/DESIGN.md``). Parameters are the
trainable weights (what PyTorch's ``parameters()`` counts); BatchNorm moving
statistics are reported apart.

Run ``keras-hiri profile --variant S --resolution 448`` for a table.
"""

import contextlib
import dataclasses
import math
import statistics
import time

import keras

from keras_hiri import checks, naming
from keras_hiri.layers.composite import walk
from keras_hiri.layers.blocks import MultiHeadSelfAttention
from keras_hiri.model import is_channels_first


@dataclasses.dataclass
class Profile:
    """Cost of one model at one input size (per image)."""

    name: str
    input_shape: tuple
    rows: list  # [(part, trainable params, MACs)]
    non_trainable_params: int

    @property
    def params(self):
        """Trainable parameters, summed over the parts."""
        return sum(r[1] for r in self.rows)

    @property
    def macs(self):
        """Multiply-accumulates for one image, summed over the parts."""
        return sum(r[2] for r in self.rows)

    @property
    def params_m(self):
        """:attr:`params` in millions (the paper's unit)."""
        return self.params / 1e6

    @property
    def gmacs(self):
        """:attr:`macs` in billions (what the paper calls GFLOPs)."""
        return self.macs / 1e9

    def table(self):
        """The per-part breakdown as a fixed-width text table."""
        h, w = self.input_shape[:2]
        lines = [
            f"{self.name} @ {h}x{w}",
            f"{'part':<20}{'params (M)':>12}{'GMACs':>10}",
            "-" * 42,
        ]
        for part, params, macs in self.rows:
            lines.append(f"{part:<20}{params / 1e6:>12.3f}{macs / 1e9:>10.3f}")
        lines.append("-" * 42)
        lines.append(f"{'total':<20}{self.params_m:>12.3f}{self.gmacs:>10.3f}")
        lines.append(f"(+ {self.non_trainable_params / 1e6:.3f} M non-trainable BatchNorm statistics)")
        return "\n".join(lines)

    def __str__(self):
        return self.table()


def part_of(layer_name):
    """The row of the profile table (stem, stageN, stageN_downsample, head) that
    the top-level layer ``layer_name`` belongs to."""
    kind, stage, _ = naming.parse(layer_name)
    if kind in ("downsample", "resize"):
        return f"stage{stage}_downsample"
    if kind in ("block", "norm"):
        return f"stage{stage}"
    if kind == "head":
        return "head"
    return layer_name


def _conv_macs(layer, out):
    _, h, w, cout = out.shape
    kh, kw = layer.kernel_size
    cin = layer.kernel.shape[2]  # already divided by groups
    return h * w * cout * kh * kw * cin


def _depthwise_macs(layer, out):
    _, h, w, c = out.shape
    kh, kw = layer.kernel_size
    return h * w * c * kh * kw


def _dense_macs(layer, out):
    positions = math.prod(out.shape[1:-1])
    return positions * layer.kernel.shape[0] * layer.kernel.shape[1]


def _attention_macs(q_in, kv_in):
    # Q K^T: Nq x Nk x C, A V: Nq x Nk x C (summed over heads).
    return 2 * q_in.shape[1] * kv_in.shape[1] * q_in.shape[2]


def _counted_layers(layer):
    """``layer`` and its sub-layers, through nested models too (a keras-hub
    backbone inside a task model)."""
    for child in walk(layer):
        yield child
        if isinstance(child, keras.Model):
            for nested in child.layers:
                yield from _counted_layers(nested)


@contextlib.contextmanager
def _hooks(model, totals):
    """Wraps the counted methods of every sub-layer; restores them on exit."""
    patched = []

    def patch(layer, method, count):
        original = getattr(layer, method)

        def wrapped(*args, **kwargs):
            out = original(*args, **kwargs)
            count(args, out)
            return out

        object.__setattr__(layer, method, wrapped)
        patched.append((layer, method))

    for top in model.layers:
        part = part_of(top.name)
        totals.setdefault(part, 0)

        def add(n, part=part):
            totals[part] += int(n)

        for layer in _counted_layers(top):
            if isinstance(layer, keras.layers.DepthwiseConv2D):
                patch(layer, "call", lambda a, o, L=layer, add=add: add(_depthwise_macs(L, o)))
            elif isinstance(layer, keras.layers.Conv2D):
                patch(layer, "call", lambda a, o, L=layer, add=add: add(_conv_macs(L, o)))
            elif isinstance(layer, keras.layers.Dense):
                patch(layer, "call", lambda a, o, L=layer, add=add: add(_dense_macs(L, o)))
            elif isinstance(layer, MultiHeadSelfAttention):
                patch(layer, "attend", lambda a, o, add=add: add(_attention_macs(a[0], a[1])))
            elif hasattr(layer, "attention_macs"):  # other attentions: their matmuls, from the input
                patch(layer, "call", lambda a, o, L=layer, add=add: add(L.attention_macs(a[0].shape)))
    try:
        yield
    finally:
        for layer, method in patched:
            object.__delattr__(layer, method)


class _Forward(keras.Operation):
    """The model's inference pass as an operation, to trace it symbolically.

    (Calling the model on a ``KerasTensor`` would not do: a functional model
    then propagates shapes through each layer's ``compute_output_shape``
    without running the sub-layers the hooks count.)
    """

    def __init__(self, model, totals):
        super().__init__(name="profiled_forward")
        self.model = model
        self.totals = totals

    def call(self, x):
        # PyTorch's symbolic pass runs on the "meta" device and, where an op
        # has no meta kernel, starts again on the CPU: each attempt counts anew.
        for part in self.totals:
            self.totals[part] = 0
        # A plain list: JAX's trace rejects Keras' tracked dict (a pyramid's outputs).
        return keras.tree.flatten(self.model(x, training=False))


def profile(model, input_shape=None):
    """Counts parameters and MACs of ``model`` for one image.

    Args:
        model: a built HIRI-ViT (any Keras functional model of these layers).
        input_shape: ``(H, W, C)`` (``(C, H, W)`` for a channels_first model);
            needed only if the model's input has
            ``None`` sides.

    Returns:
        A :class:`Profile` (``.params``, ``.gmacs``, ``.table()``).
    """
    checks.built_model(model, "profile")
    if input_shape is None:
        input_shape = tuple(model.inputs[0].shape[1:])
    if any(s is None for s in input_shape):
        raise ValueError(
            f"The model's input shape {tuple(model.inputs[0].shape[1:])} has None sides; "
            "pass input_shape=(H, W, C) to profile it."
        )
    macs = {}
    with _hooks(model, macs):
        _Forward(model, macs).compute_output_spec(keras.KerasTensor((1, *input_shape)))
    rows = []
    for top in model.layers:
        part = part_of(top.name)
        params = sum(math.prod(w.shape) for w in top.trainable_weights)
        if rows and rows[-1][0] == part:
            rows[-1] = (part, rows[-1][1] + params, rows[-1][2])
        elif params or macs.get(part):
            rows.append((part, params, macs.get(part, 0)))
    non_trainable = sum(math.prod(w.shape) for w in model.non_trainable_weights)
    if is_channels_first(model):
        input_shape = (*input_shape[1:], input_shape[0])  # reported as (H, W, C)
    return Profile(model.name, tuple(input_shape), rows, non_trainable)


def time_calls(fn, warmup=2, repeats=5):
    """Seconds per call of ``fn()``: ``warmup`` untimed calls (tracing and
    compiling happen there), then ``repeats`` timed ones.

    Returns:
        ``(median, times)``: the median and every timed call, in seconds.
    """
    checks.int_at_least("warmup", warmup, 0)
    checks.int_at_least("repeats", repeats)
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), times


def latency(model, x, warmup=2, repeats=5, jit_compile="auto"):
    """Seconds per ``model.predict_on_batch(x)``: ``warmup`` untimed calls
    (tracing / compiling happens there), then ``repeats`` timed ones. The
    model is compiled with ``jit_compile`` first, unless that is ``None``
    (then it is used as compiled).

    Returns:
        ``(median, times)``: the median and every timed call, in seconds.
    """
    if jit_compile is not None:
        model.compile(jit_compile=jit_compile)
    return time_calls(lambda: model.predict_on_batch(x), warmup, repeats)
