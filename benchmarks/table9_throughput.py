"""Does the HIRI upgrade keep the plain network's cost? Inference time of
HRNet-W18, PVTv2-B2 and DaViT-Tiny plain at 224, plain at 448 and HIRI-upgraded at 448,
on every backend.

Each model runs in a fresh process: build (``keras_hiri.backbones``, no
weights exist), ``warmup`` calls of ``predict_on_batch``, then ``repeats``
timed calls; the time is their median. Printed per backend and network: the
milliseconds per batch and the ratios ``time(HIRI@448) / time(plain@224)``
(the paper's claim: close to 1, as Table IX's GFLOPs are +10 %) and
``time(plain@448) / time(plain@224)`` (what doubling the input costs without
the upgrade).

    python benchmarks/table9_throughput.py
    python benchmarks/table9_throughput.py --backends torch --batch 4
    python benchmarks/table9_throughput.py --from-json results.json --plot speed.png   # table and bar chart again
"""

import json
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from throughput import benchmark_main, benchmark_parser, run_worker  # noqa: E402

BACKENDS = ("tensorflow", "jax", "torch")
NETWORKS = (("hrnet", "w18"), ("pvt_v2", "b2"), ("davit", "tiny"))
ROWS = [(network, variant, side, hiri) for network, variant in NETWORKS
        for side, hiri in ((224, False), (448, False), (448, True))]


def measure(spec):
    import numpy as np

    from keras_hiri import backbones

    side, batch = spec["side"], spec["batch"]
    model = backbones.BUILDERS[spec["network"]](spec["variant"], hiri=spec["hiri"], input_shape=(side, side, 3))
    x = np.random.default_rng(0).uniform(0, 255, (batch, side, side, 3)).astype("float32")
    for _ in range(spec["warmup"]):
        model.predict_on_batch(x)
    times = []
    for _ in range(spec["repeats"]):
        start = time.perf_counter()
        model.predict_on_batch(x)
        times.append(time.perf_counter() - start)
    return {**spec, "median_s": statistics.median(times), "params": model.count_params()}


def run_backend(backend, args, progress):
    results = []
    for network, variant, side, hiri in ROWS:
        spec = {"network": network, "variant": variant, "side": side, "hiri": hiri, "batch": args.batch,
                "warmup": args.warmup, "repeats": args.repeats}
        title = f"{network} {variant}{' + HIRI' if hiri else ''} @{side}"
        results.append(run_worker(__file__, spec, backend, title))
        progress.add(1)
    return results


def markdown(all_results, batch):
    lines = ["| backend | network | plain@224 ms | plain@448 ms | HIRI@448 ms | HIRI@448 / plain@224 "
             "| plain@448 / plain@224 |", "|---|---|---:|---:|---:|---:|---:|"]
    for backend, results in all_results.items():
        for network, variant in NETWORKS:
            def ms(side, hiri):
                r = next((r for r in results if (r["network"], r["variant"], r["side"], r["hiri"])
                          == (network, variant, side, hiri) and "error" not in r), None)
                return None if r is None else 1000 * r["median_s"]
            cells = [ms(224, False), ms(448, False), ms(448, True)]
            shown = ["failed" if c is None else f"{c:.0f}" for c in cells]
            base = cells[0]
            ratios = [f"{c / base:.2f}" if c and base else "-" for c in (cells[2], cells[1])]
            lines.append(f"| {backend} | {network} {variant} | " + " | ".join(shown + ratios) + " |")
    first = next((r for rs in all_results.values() for r in rs if "error" not in r), {"repeats": "-", "warmup": "-"})
    lines += ["", f"batch {batch}, median of {first['repeats']} timed predict_on_batch calls after "
                  f"{first['warmup']} warm-up calls, each model in a fresh process"]
    return "\n".join(lines)


def plot(all_results, path):
    """A bar chart of the milliseconds per batch: per backend and network,
    plain@224, plain@448 and HIRI@448 side by side."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = [(b, n, v) for b in all_results for n, v in NETWORKS]
    kinds = ((224, False, "plain @224"), (448, False, "plain @448"), (448, True, "HIRI @448"))
    fig, ax = plt.subplots(figsize=(10, 3.8))
    for k, (side, hiri, text) in enumerate(kinds):
        heights = []
        for backend, network, variant in groups:
            r = next((r for r in all_results[backend] if (r["network"], r["variant"], r["side"], r["hiri"])
                      == (network, variant, side, hiri) and "error" not in r), None)
            heights.append(0 if r is None else 1000 * r["median_s"])
        ax.bar([g + (k - 1) * 0.27 for g in range(len(groups))], heights, 0.27, label=text)
    labels = {"hrnet": "HRNet-W18", "pvt_v2": "PVTv2-B2", "davit": "DaViT-T"}
    ax.set_xticks(range(len(groups)), [f"{b}\n{labels[n]}" for b, n, _ in groups], fontsize=7)
    batch = next(r["batch"] for rs in all_results.values() for r in rs)
    ax.set_ylabel(f"ms per batch of {batch}")
    ax.set_title("Table IX networks on this CPU: the HIRI upgrade at 448 against plain at 224 and 448", fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None):
    parser = benchmark_parser(__doc__, BACKENDS, warmup=1, repeats=3)
    parser.add_argument("--plot", help="also draw the times as a bar chart (PNG) to this path")
    parser.add_argument("--from-json", help="print the table (and --plot) from a --json file of an earlier run")
    args = parser.parse_known_args(argv)[0]
    if args.from_json and not args.worker:
        with open(args.from_json) as f:
            results = json.load(f)
        batch = next(r["batch"] for rs in results.values() for r in rs)
        print(markdown(results, batch))
    else:
        results = benchmark_main(parser, argv, measure, len(ROWS), run_backend, markdown)
    if args.plot and results:
        plot(results, args.plot)


if __name__ == "__main__":
    main()
