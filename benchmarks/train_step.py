"""Training speed: one optimizer step (forward + backward + AdamW), batch 8.

Side by side in one run, per backend, each model in a fresh process:

* ``plain``: ``model.compile(AdamW, sparse categorical cross-entropy)`` and
  ``train_on_batch`` (HIRI-ViT-S at 448, drop-path 0.1 as the recipe;
  ``keras.applications.ConvNeXtTiny`` at 224, ``weights=None``);
* ``distill``: ``keras_hiri.EMADistillation`` on the same HIRI-ViT-S (CutMix /
  MixUp, the EMA teacher's class maps, the EMA fold: the paper's step).

* ``remat``: the plain step of HIRI-ViT-S built with ``remat=True``
  (gradient checkpointing: the stem, downsampling layers and blocks recomputed
  in the backward pass);
* ``paired``: the plain and the distillation step of S@448 in one process,
  timed alternately (drift of a shared machine hits both alike).

Peak MiB: the process's peak resident memory during the timed steps (counted
from after warm-up: the compiled step, weights, optimizer state, activations
and gradients), above what it held before the model existed.

Printed ratios (targets from the issue):
  D        = time(distill step, S@448) / time(plain step, S@448)  target <= 1.4
  D_paired = the same from the paired process (the fairer pairing) target <= 1.4
  R        = train thr(S@448) / train thr(ConvNeXtTiny@224)       (reported)
  M_remat  = peak MiB(remat step) / peak MiB(plain step), S@448    (reported)
  T_remat  = time(remat step) / time(plain step), S@448           (reported)

    python benchmarks/train_step.py                    # all backends
    python benchmarks/train_step.py --backends torch --repeats 3
"""

import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from throughput import (  # noqa: E402  (shared by the benchmarks)
    add_process_arguments, benchmark_main, benchmark_parser, generic_ops, peak_rss_mib, process_settings,
    reset_peak_rss, rss_mib, run_worker, speed_settings,
)

BACKENDS = ("tensorflow", "jax", "torch")
ROWS = [
    ("S", 448, "plain"),
    ("S", 448, "distill"),
    ("S", 448, "remat"),
    ("ConvNeXtTiny", 224, "plain"),
    ("S", 448, "paired"),
]


def _trainable(model_name, step, size):
    """A compiled model (or EMA-distillation trainer) ready for ``train_on_batch``."""
    import keras

    import keras_hiri

    optimizer = keras.optimizers.AdamW(1e-4, weight_decay=0.05)
    if model_name == "ConvNeXtTiny":
        model = keras.applications.ConvNeXtTiny(weights=None, input_shape=(size, size, 3))
        model.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy")
        return model
    model = keras_hiri.HiriViT(model_name, input_shape=(size, size, 3), drop_path_rate=0.1,
                               remat=step == "remat")
    if step == "distill":
        model = keras_hiri.EMADistillation(model, alpha=0.5, seed=0)
        model.compile(optimizer=optimizer)
    else:
        model.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy")
    return model


def _timed_step(model, x, y):
    start = time.perf_counter()
    model.train_on_batch(x, y)
    return time.perf_counter() - start


def measure(spec):
    import keras
    import numpy as np

    keras.utils.set_random_seed(0)
    before_model = rss_mib()
    size, batch = spec["resolution"], spec["batch"]
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (batch, size, size, 3)).astype("float32")
    y = rng.integers(0, 1000, batch)
    steps = ("plain", "distill") if spec["step"] == "paired" else (spec["step"],)
    with generic_ops(spec):  # a worker spec's "generic" ops, e.g. ["depthwise"]
        models = {step: _trainable(spec["model"], step, size) for step in steps}
    start = time.perf_counter()
    for model in models.values():
        for _ in range(spec["warmup"]):
            model.train_on_batch(x, y)
    first = time.perf_counter() - start
    reset_peak_rss()
    times = {step: [] for step in steps}
    for _ in range(spec["repeats"]):  # paired: alternate single timed steps
        for step, model in models.items():
            times[step].append(_timed_step(model, x, y))
    medians = {step: statistics.median(t) for step, t in times.items()}
    result = {**spec, "backend": keras.backend.backend(), "warmup_s": first,
              "peak_mib": peak_rss_mib() - before_model}
    if spec["step"] == "paired":
        return {**result, **{f"{k}_s": v for k, v in medians.items()},
                "D_paired": medians["distill"] / medians["plain"]}
    return {**result, "median_s": medians[spec["step"]], "images_per_s": batch / medians[spec["step"]]}


def run_backend(backend, args, progress):
    results = []
    for model, resolution, step in ROWS:
        spec = {"model": model, "resolution": resolution, "step": step, "batch": args.batch,
                "warmup": args.warmup, "repeats": args.repeats, **process_settings(args)}
        results.append(run_worker(__file__, spec, backend, f"{model} {step}"))
        progress.add(1)
    return results


def _find(results, model, step):
    return next((r for r in results if (r["model"], r["step"]) == (model, step) and "error" not in r),
                None)


def _target(d):
    return f"{d:.2f} ({'met' if d <= 1.4 else 'missed'})"


def markdown(all_results, batch):
    backends = list(all_results)
    lines = ["| model | input | step | " + " | ".join(f"{b} img/s | {b} s/step | {b} peak MiB" for b in backends)
             + " |", "|---|---|---|" + "---|" * (3 * len(backends))]
    for model, resolution, step in ROWS:
        if step == "paired":
            continue  # a ratio, below
        cells = []
        for b in backends:
            r = _find(all_results[b], model, step)
            cells += ["failed", "-", "-"] if r is None else [f"{r['images_per_s']:.2f}", f"{r['median_s']:.2f}",
                                                             f"{r['peak_mib']:.0f}"]
        lines.append(f"| {model} | {resolution} | {step} | " + " | ".join(cells) + " |")
    lines += ["", "| ratio | definition | target | " + " | ".join(backends) + " |",
              "|---|---|---|" + "---|" * len(backends)]
    d_cells, r_cells, paired_cells, m_cells, t_cells = [], [], [], [], []
    for b in backends:
        paired = _find(all_results[b], "S", "paired")
        paired_cells.append("-" if paired is None else _target(paired["D_paired"]))
        plain, distill = _find(all_results[b], "S", "plain"), _find(all_results[b], "S", "distill")
        peer = _find(all_results[b], "ConvNeXtTiny", "plain")
        if plain and distill:
            d = distill["median_s"] / plain["median_s"]
            d_cells.append(_target(d))
        else:
            d_cells.append("-")
        r_cells.append(f"{plain['images_per_s'] / peer['images_per_s']:.2f}" if plain and peer else "-")
        remat = _find(all_results[b], "S", "remat")
        m_cells.append(f"{remat['peak_mib'] / plain['peak_mib']:.2f}" if plain and remat else "-")
        t_cells.append(f"{remat['median_s'] / plain['median_s']:.2f}" if plain and remat else "-")
    lines.append("| D | time(distill step, S@448) / time(plain step, S@448) | <= 1.4 | "
                 + " | ".join(d_cells) + " |")
    lines.append("| D_paired | the same, the two steps alternated in one process | <= 1.4 | "
                 + " | ".join(paired_cells) + " |")
    lines.append("| R | train thr(S@448) / train thr(ConvNeXtTiny@224) | (reported) | "
                 + " | ".join(r_cells) + " |")
    lines.append("| M_remat | peak MiB(remat step) / peak MiB(plain step), S@448 | (reported) | "
                 + " | ".join(m_cells) + " |")
    lines.append("| T_remat | time(remat step) / time(plain step), S@448 | (reported) | "
                 + " | ".join(t_cells) + " |")
    first = next(r for rs in all_results.values() for r in rs)
    lines += ["", f"batch {batch}, AdamW, median of {first['repeats']} steps after "
                  f"{first['warmup']} warm-up steps (Keras' default compile per backend)"
                  + speed_settings(first)]
    return "\n".join(lines)


def main(argv=None):
    parser = benchmark_parser(__doc__, BACKENDS, warmup=2, repeats=3)
    add_process_arguments(parser)
    benchmark_main(parser, argv, measure, len(ROWS), run_backend, markdown)


if __name__ == "__main__":
    main()
