"""Where PyTorch's eager inference time goes, by kind of op: HIRI-ViT-S@448 against its peers.

Each model runs in a fresh process on the torch backend: ``warmup`` calls of
``predict_on_batch``, ``repeats`` timed calls (their median is the model's
time, as in ``throughput.py``), then ``repeats`` calls under
``torch.profiler``. Every aten op's self CPU time is summed into a kind (GEMM,
convolution, attention, GELU, normalisation, other element-wise, copies,
pooling and resizing, the rest: dispatch, views, allocation), and the
multiply-adds of the GEMMs, convolutions and attention are counted from the
shapes and arguments the profiler recorded, so each kind's GMAC/s stands beside
its time. Issue 10 asks where the time that is not GEMM goes: this is
PyTorch's answer, S@448 beside S@224 with the pinned grids and ConvNeXt-T@224
(P1's and P2's other rows). The profiler adds its own cost to every op, so
compare the kinds' shares, and the timed median with ``throughput.py``.

    python benchmarks/torch_ops.py
    python benchmarks/torch_ops.py --retain-freed-memory --top 8 --json out.json
    python benchmarks/torch_ops.py --from-json out.json --plot out.png   # draw a stored run again

``--plot`` draws each model's batch as one bar split by kind, with the timed
median's excess over the profiled aten time (Python: Keras' layer calls; a
lower bound, as the profiler slows every op) as a hatched end.
"""

import json
import math
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from throughput import (  # noqa: E402  (shared by the benchmarks)
    add_process_arguments, benchmark_parser, build, label, process_settings, run_and_report, run_worker,
    speed_settings, worker_spec,
)

ROWS = [
    {"model": "S", "resolution": 448},
    {"model": "S", "resolution": 224, "pinned": True},
    {"model": "ConvNeXtTiny", "resolution": 224},
]
GEMMS = ("aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm")
CONVOLUTIONS = ("aten::mkldnn_convolution", "aten::convolution_overrideable", "aten::_slow_conv2d_forward",
                "aten::thnn_conv2d", "aten::_conv_depthwise2d")
# The fused CPU kernel; the unfused fallback runs as bmm/softmax ops, counted under their own kinds.
ATTENTION = ("aten::_scaled_dot_product_flash_attention_for_cpu",)
KINDS = {
    "GEMM": GEMMS,
    "convolution": CONVOLUTIONS,
    "attention": ATTENTION,
    "GELU": ("aten::gelu",),
    "normalisation": ("aten::addcmul", "aten::native_layer_norm", "aten::native_batch_norm",
                      "aten::_native_batch_norm_legit_no_training"),
    "other element-wise": ("aten::add", "aten::add_", "aten::mul", "aten::mul_", "aten::sub", "aten::sub_",
                           "aten::div", "aten::div_", "aten::rsqrt", "aten::erf", "aten::neg", "aten::exp",
                           "aten::_softmax", "aten::sigmoid", "aten::pow", "aten::sqrt", "aten::where"),
    "copies": ("aten::copy_", "aten::fill_", "aten::zero_", "aten::constant_pad_nd"),
    "pooling, resizing": ("aten::avg_pool2d", "aten::adaptive_avg_pool2d", "aten::mean", "aten::sum",
                          "aten::upsample_nearest2d", "aten::_upsample_nearest_exact2d",
                          "aten::upsample_bilinear2d"),
}
REST = "the rest (dispatch, views, allocation)"
KIND_OF = {name: kind for kind, names in KINDS.items() for name in names}


def kind_of(name):
    """The kind an aten op's self time is counted under."""
    return KIND_OF.get(name, REST)


def macs(name, shapes, args):
    """Multiply-adds of one GEMM, convolution or attention call from the
    profiler's recorded input ``shapes`` and concrete ``args``; 0 for any other
    op (or where the record lacks what the count needs)."""
    try:
        if name in ("aten::mm", "aten::bmm"):
            a, b = shapes[0], shapes[1]
            return math.prod(a) * b[-1]
        if name in ("aten::addmm", "aten::baddbmm"):
            a, b = shapes[1], shapes[2]
            return math.prod(a) * b[-1]
        if name == "aten::thnn_conv2d":
            return 0  # the wrapper of _slow_conv2d_forward, whose record counts the call
        if name in CONVOLUTIONS:
            x, w = shapes[0], shapes[1]  # NCHW input, (out, in / groups, kh, kw) weight
            if name == "aten::_slow_conv2d_forward":  # (input, weight, kernel_size, bias, stride, padding)
                padding, stride, dilation = args[5], args[4], (1, 1)
            else:  # (input, weight, bias, padding, stride, dilation, ...)
                padding, stride, dilation = args[3], args[4], args[5]
            grid = [
                (x[2 + i] + 2 * padding[i] - dilation[i] * (w[2 + i] - 1) - 1) // stride[i] + 1
                for i in range(2)
            ]
            return x[0] * math.prod(grid) * math.prod(w)
        if name in ATTENTION:  # q k^T and the weights times v: (B, heads, N, d) x (B, heads, M, d)
            q, k = shapes[0], shapes[1]
            return 2 * math.prod(q) * k[-2]
    except (IndexError, TypeError):
        return 0
    return 0


def summarise(events, calls):
    """Per kind: ms per call and multiply-adds per call; and the top ops (name
    and shapes) by self time, from a profiler's ``events()`` over ``calls``
    forward passes."""
    kinds = {kind: {"ms": 0.0, "macs": 0} for kind in list(KINDS) + [REST]}
    ops = {}
    for e in events:
        if e.device_type.name != "CPU":
            continue
        shapes = [list(s) for s in (e.input_shapes or [])]
        args = list(getattr(e, "concrete_inputs", None) or [])
        ms, count = e.self_cpu_time_total / 1e3 / calls, macs(e.name, shapes, args) / calls
        kind = kind_of(e.name)
        kinds[kind]["ms"] += ms
        kinds[kind]["macs"] += count
        key = f"{e.name} {[s for s in shapes if s]}"
        op = ops.setdefault(key, {"op": key, "kind": kind, "ms": 0.0, "macs": 0})
        op["ms"] += ms
        op["macs"] += count
    top = sorted(ops.values(), key=lambda o: -o["ms"])
    return kinds, top


def measure(spec):
    import keras
    import numpy as np
    import torch
    from torch.profiler import ProfilerActivity, profile

    import keras_hiri
    from keras_hiri.profiling import latency

    keras.utils.set_random_seed(0)
    model = build(spec)
    gmacs = keras_hiri.profile(model).gmacs
    size = spec["resolution"]
    x = np.random.default_rng(0).uniform(0, 255, (spec["batch"], size, size, 3)).astype("float32")
    median, _ = latency(model, x, spec["warmup"], spec["repeats"], jit_compile=None)  # eager, as Keras runs it
    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        for _ in range(spec["repeats"]):
            model.predict_on_batch(x)
    kinds, top = summarise(prof.events(), spec["repeats"])
    return {**spec, "backend": "torch", "torch": torch.__version__, "gmacs": gmacs,
            "median_s": median, "kinds": kinds, "top": top[:spec["top"]]}


def _cell(kind, total):
    rate = f", {kind['macs'] / kind['ms'] / 1e6:.1f} GMAC/s" if kind["macs"] and kind["ms"] else ""
    return f"{kind['ms']:.1f} ({100 * kind['ms'] / total:.0f} %{rate})"


def markdown(results):
    ok = [r for r in results if "error" not in r]
    failed = [label(r) + f"@{r['resolution']}" for r in results if "error" in r]
    if not ok:
        return "every model failed: " + ", ".join(failed)
    names = [f"{label(r)}@{r['resolution']}" for r in ok]
    totals = [sum(k["ms"] for k in r["kinds"].values()) for r in ok]
    lines = ["| kind | " + " | ".join(f"{n} ms/batch (share, GMAC/s)" for n in names) + " |",
             "|---|" + "---|" * len(ok)]
    for kind in list(KINDS) + [REST]:
        lines.append(f"| {kind} | " + " | ".join(_cell(r["kinds"][kind], t) for r, t in zip(ok, totals)) + " |")
    lines.append("| **profiled total** | " + " | ".join(
        f"{t:.1f} ({r['gmacs'] * r['batch'] / t * 1e3:.1f} GMAC/s)" for r, t in zip(ok, totals)) + " |")
    lines.append("| timed median, no profiler | " + " | ".join(
        f"{1e3 * r['median_s']:.1f} ({r['gmacs'] * r['batch'] / r['median_s']:.1f} GMAC/s)" for r in ok) + " |")
    lines.append("| model GMACs per image (keras_hiri.profile) | " + " | ".join(f"{r['gmacs']:.2f}" for r in ok)
                 + " |")
    for r, name in zip(ok, names):
        lines += ["", f"Top ops of {name} by self time (ms per batch, kind, GMAC/s where counted):", ""]
        lines += [f"* {o['ms']:.1f} ms — {o['op']} ({o['kind']}"
                  + (f", {o['macs'] / o['ms'] / 1e6:.1f} GMAC/s" if o["macs"] and o["ms"] else "") + ")"
                  for o in r["top"]]
    lines += ["", f"PyTorch {ok[0]['torch']} eager, batch {ok[0]['batch']}, self CPU time of every aten op under "
                  f"torch.profiler over {ok[0]['repeats']} predict_on_batch calls after {ok[0]['warmup']} warm-up "
                  "calls; kernel switches: all auto" + speed_settings(ok[0])]
    if failed:
        lines.append("failed: " + ", ".join(failed))
    return "\n".join(lines)


def plot(results, out):
    """One horizontal bar per model: its profiled ms per batch split by kind,
    then the timed median's excess over that (Python outside aten ops), hatched."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ok = [r for r in results if "error" not in r]
    if not ok:
        raise ValueError("no model to plot: every row failed")
    names = [f"{label(r)}@{r['resolution']}" for r in ok]
    fig, ax = plt.subplots(figsize=(11, 1.6 + 0.7 * len(ok)))
    left = [0.0] * len(ok)
    colours = plt.get_cmap("tab10")
    for i, kind in enumerate(list(KINDS) + [REST]):
        widths = [r["kinds"][kind]["ms"] for r in ok]
        ax.barh(names, widths, left=left, color=colours(i), label=kind)
        left = [a + b for a, b in zip(left, widths)]
    python = [max(0.0, 1e3 * r["median_s"] - total) for r, total in zip(ok, left)]
    ax.barh(names, python, left=left, color="white", edgecolor="0.4", hatch="//",
            label="timed median beyond the profiled ops (Python; a lower bound, the profiler slows the ops)")
    ax.invert_yaxis()
    ax.set_xlabel("ms per batch")
    ax.set_title(f"Where PyTorch's eager time goes (batch {ok[0]['batch']}, torch {ok[0]['torch']}, CPU)")
    ax.legend(fontsize=8, ncol=3, loc="upper center", bbox_to_anchor=(0.5, -0.3))
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    os.makedirs(os.path.dirname(out) or ".", exist_ok=True)
    fig.savefig(out, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return python


def run_backend(backend, args, progress):
    results = []
    for row in ROWS:
        spec = {**row, "batch": args.batch, "warmup": args.warmup, "repeats": args.repeats, "top": args.top,
                **process_settings(args)}
        results.append(run_worker(__file__, spec, backend, label(spec)))
        progress.add(1)
    return results


def main(argv=None):
    parser = benchmark_parser(__doc__, ("torch",), warmup=3, repeats=3)
    parser.add_argument("--top", type=int, default=6, help="how many single ops to list per model")
    parser.add_argument("--plot", help="also draw the results as a PNG at this path")
    parser.add_argument("--from-json", help="measure nothing: print the table (and --plot) of a stored --json run")
    add_process_arguments(parser)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(measure(worker_spec(args.worker))))
        return
    if args.warmup < 1 or args.repeats < 1 or args.batch < 1 or args.top < 0:
        parser.error("--warmup, --repeats and --batch must be >= 1, --top >= 0")
    if args.from_json:
        with open(args.from_json) as f:
            results = json.load(f)["torch"]
        print(markdown(results))
    else:
        results = run_and_report(args, len(ROWS), run_backend,
                                 lambda results, batch: markdown(results["torch"]))["torch"]
    if args.plot:
        plot(results, args.plot)
        print(f"wrote {args.plot}")


if __name__ == "__main__":
    main()
