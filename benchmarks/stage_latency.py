"""Where the time goes: latency of each part of a HIRI-ViT beside its GMACs.

The profile that guides the speed work (issue 5). For every part the
MAC counter knows (stem, stageN_downsample, stageN, head) it times the model
cut after that part (``input -> that part's last layer``, compiled like the
throughput benchmark, median of repeated batches) and reports the increment
over the previous cut, with the part's GMACs and the achieved GMAC/s. A part
with a low GMAC/s is memory- or overhead-bound: that is where work pays off.

    KERAS_BACKEND=jax python benchmarks/stage_latency.py --variant S --resolution 448
    KERAS_BACKEND=tensorflow python benchmarks/stage_latency.py --folded
    KERAS_BACKEND=jax python benchmarks/stage_latency.py --train   # forward + backward + AdamW

With ``--train`` each cut runs a training step instead (``train_on_batch``
against zeros of the cut's output, mean squared error, AdamW): the increment is
that part's forward, backward and weight update.
"""

import argparse

import keras
import numpy as np

import keras_hiri
from keras_hiri.profiling import latency, part_of, time_calls


def cuts(model):
    """``[(part, last top-level layer of that part)]`` in model order."""
    order = []
    for layer in model.layers[1:]:
        part = part_of(layer.name)
        if part == "preprocessing":
            continue
        if order and order[-1][0] == part:
            order[-1] = (part, layer)
        else:
            order.append((part, layer))
    return order


def train_latency(model, x, warmup, repeats, jit_compile):
    """Median seconds per ``train_on_batch`` (forward, backward, AdamW) of
    ``model`` on ``x`` against zeros of its output."""
    model.compile(optimizer=keras.optimizers.AdamW(1e-4), loss="mse", jit_compile=jit_compile)
    y = np.zeros((len(x),) + tuple(model.output.shape[1:]), "float32")
    return time_calls(lambda: model.train_on_batch(x, y), max(warmup, 1), repeats)[0]


def table(rows, batch):
    """The printed table's lines: ``rows`` is ``[(part, seconds, MACs per image)]``, each
    part's increment over the previous cut (noise can make a small part's negative).
    Every column starts with a space, so a wide or negative number never runs into its
    neighbour and ``line.split()`` reads the columns back."""
    total = sum(t for _, t, _ in rows)
    macs = sum(m for _, _, m in rows)
    lines = [f"{'part':<20} {'ms/batch':>9} {'share':>7} {'GMACs/img':>10} {'GMAC/s':>8}"]
    for part, t, m in rows:
        rate = batch * m / 1e9 / t if t > 0 else float("nan")
        lines.append(f"{part:<20} {1000 * t:>9.1f} {100 * t / total:>6.1f}% {m / 1e9:>10.3f} {rate:>8.1f}")
    lines.append(f"{'total':<20} {1000 * total:>9.1f} {'':>7} {macs / 1e9:>10.3f} {batch * macs / 1e9 / total:>8.1f}")
    return lines


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--variant", default="S")
    parser.add_argument("--resolution", type=int, default=448)
    parser.add_argument("--pin-late-grids", action="store_true")
    parser.add_argument("--folded", action="store_true", help="time the BN-folded model")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--jit", choices=["auto", "true", "false"], default="auto",
                        help="jit_compile of every cut; auto (Keras' default, as the throughput benchmark "
                             "uses it): XLA on JAX, a tf.function graph on a CPU-only TensorFlow, eager "
                             "PyTorch (true there is torch.compile, which recompiles the first cut per call)")
    parser.add_argument("--train", action="store_true",
                        help="time a training step of each cut instead of inference")
    args = parser.parse_args(argv)
    if args.train and args.folded:
        parser.error("--folded is an inference copy; it does not train (drop --folded or --train)")
    jit = {"auto": "auto", "true": True, "false": False}[args.jit]

    size = args.resolution
    model = keras_hiri.HiriViT(
        args.variant, input_shape=(size, size, 3), pin_late_grids=args.pin_late_grids
    )
    macs = {part: m for part, _, m in keras_hiri.profile(model).rows}
    if args.folded:
        model = keras_hiri.fold_batchnorm(model)
    x = np.random.default_rng(0).uniform(0, 255, (args.batch, size, size, 3)).astype("float32")
    parts = cuts(model)
    bar = keras.utils.Progbar(len(parts), unit_name="cut")
    rows, previous = [], 0.0
    for part, last in parts:
        cut = keras.Model(model.inputs, last.output)
        if args.train:
            t = train_latency(cut, x, args.warmup, args.repeats, jit)
        else:
            t, _ = latency(cut, x, args.warmup, args.repeats, jit)
        rows.append((part, t - previous, macs.get(part, 0)))
        previous = t
        bar.add(1)
    print(
        f"\n{model.name}{' (folded)' if args.folded else ''} @ {size}, batch {args.batch}, "
        f"backend {keras.backend.backend()}, jit_compile={args.jit}"
        + (", training step (forward + backward + AdamW)" if args.train else ", inference")
    )
    print("\n".join(table(rows, args.batch)))


if __name__ == "__main__":
    main()
