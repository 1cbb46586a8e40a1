"""Inference throughput and peak memory: HIRI-ViT-S/B/L against keras.applications peers.

Side by side in one run, on this machine, per backend, at one batch size:
HIRI-ViT-S/B/L at 224/384/448/768 (plain stride schedule), S at 224 with the
paper's pinned late grids, S/B at 448 with BatchNorm folded
(``keras_hiri.fold_batchnorm``), and ``keras.applications`` peers with
``weights=None``: ConvNeXtTiny/Small/Base at 224 and EfficientNetV2S at 384.

Every model is measured in a fresh subprocess (so the peak memory is its own):
build, ``compile(jit_compile=...)``, ``warmup`` calls of ``predict_on_batch``,
then ``repeats`` timed calls; the time is their median. Peak memory is the
process's peak resident set size during inference (the count is restarted
once the model is built) above what the process used before the model
existed: weights + activations + compiled code + what compiling took. The
figure in brackets is the steady state: the peak during the timed calls only
(the count restarted after warm-up, once the heap that compiling freed is
returned to the OS), i.e. what inference holds once compiled.
It is a CPU measure.

The first row of each backend is the machine's dense float32 GEMM rate
(``keras.ops.matmul``, 2048³, all cores): the physical limit each model's
achieved GMAC/s (its multiply-adds x images/s) is reported as a share of.

Ratios printed per backend (targets from the issue):
  P1 = throughput(S@448) / throughput(ConvNeXtTiny@224)      target >= 1.0
  P2 = time(S@448) / time(S@224)                            target <= 1.3
       (with the paper's pinned 224 grids, and with the plain schedule)
  P4 = throughput(S@448 folded) / throughput(S@448)          target >= 1.07
       (the two timed alternately in one process, the fairest pairing)
  G  = GMAC/s(S@448) / the dense GEMM's GMAC/s               target >= 0.5
  M  = peak MiB(S@448) / peak MiB(ConvNeXtTiny@224)           target <= 1.0
       (M_steady: the same for the steady state after warm-up)
and across backends: T_b = thr(S@448, b) / thr(S@448, tensorflow), target >= 0.8.

    python benchmarks/throughput.py                        # all backends, full grid
    python benchmarks/throughput.py --quick                # the rows the ratios need
    python benchmarks/throughput.py --backends jax --json out.json
    python benchmarks/throughput.py --quick --retain-freed-memory   # glibc keeps freed memory
    python benchmarks/throughput.py --alternate-retain 3 --backends torch   # that setting's speed-up
    python benchmarks/throughput.py --alternate-ynnpack 3 --backends jax    # XLA's own CPU kernels'
(the process settings are benchmarks/process_settings.py's, never the library's)
    python benchmarks/throughput.py --alternate-backends 3   # S@448 only, T_b from alternated rounds
    python benchmarks/throughput.py --alternate-models 5     # P1, P2, M from alternated rounds
    python benchmarks/throughput.py --kernel-pair conv       # an op implementation against the generic op
"""

import argparse
import functools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # implementations, process_settings

BACKENDS = ("tensorflow", "jax", "torch")
PEERS = {
    "ConvNeXtTiny": 224,
    "ConvNeXtSmall": 224,
    "ConvNeXtBase": 224,
    "EfficientNetV2S": 384,
}
# "auto" = Keras' default (plain tf.function graph on a CPU-only TensorFlow,
# jax.jit on JAX, eager on PyTorch); "jit" = XLA on TensorFlow
# (jit_compile=True), jax.jit on JAX, torch.compile on PyTorch.
DEFAULT_COMPILE = {"tensorflow": "auto", "jax": "auto", "torch": "auto"}


def rss_mib():
    """Current resident set size (Linux /proc; 0 where unavailable)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:
        return 0.0


def reset_peak_rss():
    """Restarts the peak-RSS count from now (Linux ``clear_refs``; no-op elsewhere)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def release_free_heap():
    """Collects Python's garbage, then returns the C heap's free pages to the
    OS (glibc ``malloc_trim``; no-op elsewhere). Compiling (XLA, TensorFlow
    graphs) frees hundreds of MiB that glibc keeps mapped; without this the
    steady-state count would start from that retained heap rather than from
    what inference holds."""
    import ctypes
    import ctypes.util
    import gc

    gc.collect()

    try:
        ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def minor_faults():
    """The process's minor page faults so far (each a page the kernel mapped,
    and zeroed when new)."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def peak_rss_mib():
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def generic_ops(spec):
    """The context in which a worker builds its models: the generic op in place
    of the ``keras_hiri.ops`` implementations ``spec["generic"]`` names (``--generic``)."""
    from implementations import generic

    return generic(*spec.get("generic", []))


def build(spec):
    """The model a job row names (weights are random: speed does not depend on them)."""
    import keras

    import keras_hiri

    size = spec["resolution"]
    if spec.get("path"):  # a model saved by prepare() (the folded rows)
        return keras.saving.load_model(spec["path"])
    if spec["model"] in PEERS:
        cls = getattr(keras.applications, spec["model"])
        return cls(weights=None, input_shape=(size, size, 3))
    model = keras_hiri.HiriViT(
        spec["model"], input_shape=(size, size, 3), pin_late_grids=spec.get("pinned", False)
    )
    if spec.get("folded"):
        model = keras_hiri.fold_batchnorm(model)  # the unfolded one is freed on return
    return model


def _jit_and_batch(spec):
    """The ``jit_compile`` value for the spec's mode, and its input batch."""
    import numpy as np

    jit = _jit_compile(spec["compile"])
    size = spec["resolution"]
    x = np.random.default_rng(0).uniform(0, 255, (spec["batch"], size, size, 3)).astype("float32")
    return jit, x


def prepare(spec):
    """Builds, folds and saves a folded model, so that the measuring process
    holds only the folded one (its peak memory is then its own)."""
    build({**spec, "path": None}).save(spec["path"])


def measure_pair(spec):
    """P4, measured paired: the unfolded and the folded model in one process,
    timed alternately (drift of a shared machine hits both alike)."""
    import keras

    import keras_hiri
    from keras_hiri.profiling import latency

    keras.utils.set_random_seed(0)
    with generic_ops(spec):
        model = build({**spec, "folded": False})
    models = {"unfolded": model, "folded": keras_hiri.fold_batchnorm(model)}
    jit, x = _jit_and_batch(spec)
    for m in models.values():
        latency(m, x, warmup=spec["warmup"], repeats=1, jit_compile=jit)  # compile + warm up
    medians = _time_alternately(models, x, spec["repeats"])
    return {**spec, "backend": keras.backend.backend(), **{f"{k}_s": v for k, v in medians.items()},
            "P4": medians["unfolded"] / medians["folded"]}


def _time_alternately(models, x, repeats, before_call=lambda key: None):
    """Median seconds per ``predict_on_batch(x)`` of each of ``models`` (a
    dict, already compiled and warm), timed one call at a time in turn
    ``repeats`` times, so drift of a shared machine hits all alike;
    ``before_call(key)`` runs before each model's call (untimed)."""
    from keras_hiri.profiling import latency

    times = {key: [] for key in models}
    for _ in range(repeats):
        for key, model in models.items():
            before_call(key)
            times[key] += latency(model, x, warmup=0, repeats=1, jit_compile=None)[1]
    return {key: statistics.median(t) for key, t in times.items()}


def measure_kernel_pair(spec):
    """S@448 built twice (same seed, so the same weights): with this backend's
    implementation of op ``spec["kernel_pair"]`` (``keras_hiri.ops``) and with
    the generic ``keras.ops`` op, each compiled, then timed alternately call by
    call in this one process. Returns the median s/batch of each, and the
    largest difference between their outputs."""
    import keras
    import numpy as np

    from implementations import generic
    from keras_hiri.profiling import latency

    name = spec["kernel_pair"]
    jit, x = _jit_and_batch(spec)
    models, outputs = {}, {}
    for implementation in ("backend", "generic"):
        keras.utils.set_random_seed(0)
        with generic_ops(spec), generic(*([name] if implementation == "generic" else [])):
            models[implementation] = build(spec)
        latency(models[implementation], x, warmup=spec["warmup"], repeats=1, jit_compile=jit)
        outputs[implementation] = np.asarray(models[implementation].predict_on_batch(x))
    medians = _time_alternately(models, x, spec["repeats"])
    return {**spec, "backend": keras.backend.backend(), "implementations": ["generic", "backend"],
            "median_s": medians,
            "max_abs_diff": float(np.abs(outputs["backend"] - outputs["generic"]).max())}


def measure(spec):
    """Runs one job in this process; returns its result dict."""
    import keras

    import keras_hiri
    from keras_hiri.profiling import latency

    keras.utils.set_random_seed(0)
    baseline = rss_mib()
    with generic_ops(spec):
        model = build(spec)
    gmacs = keras_hiri.profile(model).gmacs
    if keras.backend.backend() == "jax":
        # JAX keeps an executable for every (op, shape) run eagerly: the
        # build's initializers hold ~200 MiB of them for HIRI-ViT-S
        # (docs/RESULTS.md; profile() is symbolic and adds none). A serving
        # process needs none of them; this releases them before measuring.
        import jax

        jax.clear_caches()
    release_free_heap()
    reset_peak_rss()  # count weights + inference, not the build's transients
    jit, x = _jit_and_batch(spec)
    start = time.perf_counter()
    model.compile(jit_compile=jit)
    model.predict_on_batch(x)
    first = time.perf_counter() - start
    peak_first = peak_rss_mib()  # the compile (XLA/tracing) happens in this first call
    if spec["warmup"] > 1:
        latency(model, x, spec["warmup"] - 2, 1, jit_compile=None)
    release_free_heap()
    reset_peak_rss()  # from here: steady-state inference only
    # One untimed call after the trim: it maps the heap's pages again, which
    # would otherwise be timed once under retain_freed_memory().
    model.predict_on_batch(x)
    faults = minor_faults()
    median, times = latency(model, x, 0, spec["repeats"], jit_compile=None)
    faults = (minor_faults() - faults) / spec["repeats"]
    steady = peak_rss_mib()
    return {
        **spec,
        "backend": keras.backend.backend(),
        "first_call_s": first,
        "median_s": median,
        "min_s": min(times),
        "images_per_s": spec["batch"] / median,
        "peak_mib": max(0.0, peak_first - baseline, steady - baseline),
        "steady_peak_mib": max(0.0, steady - baseline),
        "minor_faults_per_batch": faults,
        "params_m": model.count_params() / 1e6,
        "gmacs": gmacs,
    }


GEMM_SIZE = 2048
GEMM_ROW = {"model": "GEMM", "resolution": GEMM_SIZE, "gemm": True}


def _gemm(results):
    """The GEMM row of ``results`` that succeeded, or ``None``."""
    return next((r for r in results if r.get("gemm") and "error" not in r), None)


def measure_gemm(spec):
    """The machine's dense float32 GEMM rate on this backend, all cores: the
    median time of ``keras.ops.matmul`` of two ``GEMM_SIZE`` square matrices
    (``GEMM_SIZE**3`` multiply-adds), compiled as the backend compiles a model."""
    import keras
    import numpy as np

    from keras_hiri.profiling import time_calls

    n = GEMM_SIZE
    rng = np.random.default_rng(0)
    a, b = (keras.ops.convert_to_tensor(rng.normal(size=(n, n)).astype("float32")) for _ in "ab")
    inputs = [keras.Input((n,), batch_size=n), keras.Input((n,), batch_size=n)]
    model = keras.Model(inputs, keras.layers.Lambda(lambda t: keras.ops.matmul(*t))(inputs))
    model.compile(jit_compile="auto")
    median = time_calls(lambda: model.predict_on_batch([a, b]), spec["warmup"] + 1,
                        max(spec["repeats"], 5))[0]
    return {**spec, "backend": keras.backend.backend(), "median_s": median,
            "gmac_per_s": n**3 / median / 1e9}


def jobs(args):
    rows = [GEMM_ROW]
    hiri = lambda m, r, **kw: {"model": m, "resolution": r, **kw}  # noqa: E731
    if args.quick:
        rows += [hiri("S", 224), hiri("S", 224, pinned=True), hiri("S", 448), hiri("S", 448, folded=True)]
        rows += [{"model": "ConvNeXtTiny", "resolution": 224}]
        rows += [hiri("S", 448, pair=True)]
    else:
        for letter in args.variants:
            for r in args.resolutions:
                rows.append(hiri(letter, r))
            if 224 in args.resolutions:
                rows.append(hiri(letter, 224, pinned=True))
            if 448 in args.resolutions:
                rows.append(hiri(letter, 448, folded=True))
        rows += [{"model": m, "resolution": r} for m, r in PEERS.items()]
        if "S" in args.variants and 448 in args.resolutions:
            rows.append(hiri("S", 448, pair=True))
    return rows


def job_spec(row, backend, args):
    """The worker spec of a job row on ``backend`` under the run's options."""
    return {
        **row,
        "batch": args.batch,
        "warmup": args.warmup,
        "repeats": args.repeats,
        "compile": args.compile or DEFAULT_COMPILE[backend],
        "generic": list(args.generic),
        **process_settings(args),
    }


def run_backend(backend, args, progress):
    results = []
    for row in jobs(args):
        spec = job_spec(row, backend, args)
        env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "3"}
        with tempfile.TemporaryDirectory() as tmp:
            if spec.get("folded"):
                spec["path"] = os.path.join(tmp, "folded.keras")
                subprocess.run(
                    [sys.executable, __file__, "--prepare", json.dumps(spec)],
                    env=env, capture_output=True, text=True, check=False,
                )
            results.append(run_worker(__file__, spec, backend, label(spec)))
        progress.add(1)
    return results


S448 = {"model": "S", "resolution": 448}


def run_s448(backend, args, progress):
    """One S@448 row on ``backend`` (a round of ``--alternate-backends``)."""
    result = run_worker(__file__, job_spec(S448, backend, args), backend, f"S@448 on {backend}")
    progress.add(1)
    return [result]


RATIO_ROWS = (GEMM_ROW, S448, {"model": "ConvNeXtTiny", "resolution": 224},
              {"model": "S", "resolution": 224, "pinned": True})
ROUND_RATIOS = ("P1", "P2", "G", "M", "M_steady")


def _round_label(row):
    return "dense GEMM" if row.get("gemm") else f"{label(row)}@{row['resolution']}"


def run_ratio_rows(rounds_done, backend, args, progress):
    """One round of ``--alternate-models`` on ``backend``: the rows P1, P2, G and
    M need (:data:`RATIO_ROWS`), each in a fresh process, in reverse order every
    other round so that no model always runs first. ``rounds_done`` counts the
    rounds per backend across calls."""
    done = rounds_done.get(backend, 0)
    rounds_done[backend] = done + 1
    results = []
    for row in RATIO_ROWS if done % 2 == 0 else RATIO_ROWS[::-1]:
        spec = job_spec(row, backend, args)
        results.append(run_worker(__file__, spec, backend, _round_label(row)))
        progress.add(1)
    return results


def _median_and_range(values, key):
    """``"median (min-max)"`` of ``values`` and whether the median meets ``key``'s target."""
    middle = statistics.median(values)
    return f"{middle:.2f} ({min(values):.2f}-{max(values):.2f}) {'met' if _meets(key, middle) else 'missed'}"


def model_rounds_table(all_results, batch):
    """The rounds of ``--alternate-models``: each model's s/batch (the GEMM's
    GMAC/s) per round, and P1, P2, G, M and M_steady as the median (and range)
    of the per-round ratios; a round where a worker failed gives no ratio."""
    names = [_round_label(r) + (" GMAC/s" if r.get("gemm") else " s/batch") for r in RATIO_ROWS]
    lines = ["| backend | " + " | ".join(f"{n}, per round" for n in names) + " | "
             + " | ".join(f"{k} {TARGETS[k][0]} {TARGETS[k][1]}, median (range)" for k in ROUND_RATIOS) + " |",
             "|---|" + "---|" * (len(names) + len(ROUND_RATIOS))]
    for backend, rows in all_results.items():
        rounds = [rows[i:i + len(RATIO_ROWS)] for i in range(0, len(rows), len(RATIO_ROWS))]
        columns = []
        for row in RATIO_ROWS:
            if row.get("gemm"):
                rates = [_gemm(rnd) for rnd in rounds]
                columns.append(", ".join(f"{r['gmac_per_s']:.1f}" if r else "failed" for r in rates))
                continue
            picked = [find(rnd, row["model"], row["resolution"], pinned=bool(row.get("pinned"))) or {"error": "-"}
                      for rnd in rounds]
            columns.append(_per_round(picked))
        per_round = [ratios(rnd) for rnd in rounds]
        cells = []
        for key in ROUND_RATIOS:
            values = [r[key] for r in per_round if key in r]
            cells.append(_median_and_range(values, key) if values else "-")
        lines.append(f"| {backend} | " + " | ".join(columns) + " | " + " | ".join(cells) + " |")
    first = next(r for rs in all_results.values() for r in rs if not r.get("gemm"))
    lines += ["", f"batch {batch}, median of {first['repeats']} timed batches per process, each model in a "
                  f"fresh process, {len(RATIO_ROWS)} processes per round (the GEMM and three models; order "
                  "reversed every other round), the "
                  "backends alternated in every round; ratios within a round" + speed_settings(first)]
    return "\n".join(lines)


def run_kernel_pairs(backend, args, progress):
    """``--pair-rounds`` fresh processes of :func:`measure_kernel_pair` on ``backend``."""
    results = []
    for _ in range(args.pair_rounds):
        spec = {**job_spec(S448, backend, args), "kernel_pair": args.kernel_pair}
        results.append(run_worker(__file__, spec, backend, f"S@448, {args.kernel_pair} paired"))
        progress.add(1)
    return results


def kernel_pair_table(all_results, batch):
    """The table of ``--kernel-pair``: each implementation's s/batch per
    process, and the speed-up of the second over the first (median of the
    per-process ratios)."""
    ok = [r for rs in all_results.values() for r in rs if "error" not in r]
    if not ok:
        return "every worker failed"
    name = ok[0]["kernel_pair"]
    lines = [f"| backend | {name}: generic op, s/batch per process | backend implementation, s/batch "
             "per process | speed-up of the backend implementation (median of per-process ratios) | "
             "largest output difference |",
             "|---|---|---|---|---|"]
    for backend, rows in all_results.items():
        good = [r for r in rows if "error" not in r]
        if not good:
            lines.append(f"| {backend} | failed | failed | - | - |")
            continue
        first, second = good[0]["implementations"]
        cells = [f"{i}: " + ", ".join("failed" if "error" in r else f"{r['median_s'][i]:.3f}" for r in rows)
                 for i in (first, second)]
        speedup = statistics.median(r["median_s"][first] / r["median_s"][second] for r in good)
        diff = max(r["max_abs_diff"] for r in good)
        lines.append(f"| {backend} | {cells[0]} | {cells[1]} | {speedup:.3f}x | {diff:.1e} |")
    lines += ["", f"HIRI-ViT-S@448, batch {batch}, the two models (same weights) in one process timed alternately "
                  f"call by call, median of {ok[0]['repeats']} calls each; a fresh process for each entry of a column "
                  "(the two columns' n-th entries from the same process)"
                  + _compile_mode(ok[0]) + speed_settings(ok[0])]
    return "\n".join(lines)


def _jit_compile(mode):
    """The ``jit_compile`` value of a ``--compile`` mode (``jit``, ``none``, ``auto``)."""
    return {"jit": True, "none": False}.get(mode, "auto")


def _compile_mode(result):
    """``"; --compile MODE (...)"`` for a footer where a run did not use the backends' defaults."""
    mode = result.get("compile", "auto")
    if mode == "auto":
        return ""
    return f"; --compile {mode} (predict_on_batch with jit_compile={_jit_compile(mode)})"


def _per_round(rows):
    """Each round's s/batch, ``failed`` where the worker failed."""
    return ", ".join("failed" if "error" in r else f"{r['median_s']:.3f}" for r in rows)


def _paired(first, second):
    """The rounds where both workers succeeded, as ``(first, second)`` results."""
    return [(a, b) for a, b in zip(first, second) if "error" not in a and "error" not in b]


def backend_rounds_table(all_results, batch):
    """The rounds of ``--alternate-backends``: S@448's s/batch per round on each
    backend, and T_b as the median over rounds of that round's ratio to
    TensorFlow (the processes of one round ran minutes apart at most)."""
    lines = ["| backend | s/batch, per round | img/s (median) | T_b = thr(b) / thr(tensorflow), "
             "median of per-round ratios | target |", "|---|---|---|---|---|"]
    reference = all_results.get("tensorflow", [])
    for backend, rows in all_results.items():
        ok = [r["median_s"] for r in rows if "error" not in r]
        speed = f"{batch / statistics.median(ok):.2f}" if ok else "-"
        pairs = _paired(reference, rows)
        if backend == "tensorflow" or not pairs:
            ratio = target = "-"
        else:
            value = statistics.median(t["median_s"] / r["median_s"] for t, r in pairs)
            ratio, target = f"{value:.3f}", f">= 0.8 ({'met' if value >= 0.8 else 'missed'})"
        lines.append(f"| {backend} | {_per_round(rows)} | {speed} | {ratio} | {target} |")
    first = next(r for rs in all_results.values() for r in rs)
    lines += ["", f"HIRI-ViT-S@448, batch {batch}, median of {first['repeats']} timed batches per process, "
                  "each process fresh, the backends alternated in every round" + speed_settings(first)]
    return "\n".join(lines)


def run_setting_pairs(setting, rounds, backend, args, progress):
    """S@448 in fresh processes, without and with the process setting
    ``setting`` (a ``keras_hiri`` function of :data:`PROCESS_SETTINGS`),
    alternated ``rounds`` times: machine drift hits both alike (separate runs
    minutes apart differ by more than a setting does on this machine)."""
    results = []
    for _ in range(rounds):
        for applied in (False, True):
            spec = {**job_spec(S448, backend, args), setting: applied}
            results.append(run_worker(__file__, spec, backend, f"S@448 {setting}={applied}"))
            progress.add(1)
    return results


def setting_table(setting):
    """The table of :func:`run_setting_pairs` for ``setting``: each round's
    s/batch both ways, and the median over rounds of (default time / time with
    the setting), steady memory and page faults."""

    def table(all_results, batch):
        lines = [f"| backend | without s/batch, per round | {setting_call(setting)} s/batch, per round "
                 "| speed-up (median of per-round ratios) | steady peak MiB, without / with "
                 "| minor page faults per batch, without / with |",
                 "|---|---|---|---|---|---|"]
        for backend, rows in all_results.items():
            default = [r for r in rows if not r[setting]]
            applied = [r for r in rows if r[setting]]
            pairs = _paired(default, applied)
            speedup = (f"{statistics.median(d['median_s'] / r['median_s'] for d, r in pairs):.2f}x"
                       if pairs else "-")
            memory = (f"{statistics.median(d['steady_peak_mib'] for d, _ in pairs):.0f} / "
                      f"{statistics.median(r['steady_peak_mib'] for _, r in pairs):.0f}" if pairs else "-")
            faults = (f"{statistics.median(d.get('minor_faults_per_batch', 0) for d, _ in pairs):.0f} / "
                      f"{statistics.median(r.get('minor_faults_per_batch', 0) for _, r in pairs):.0f}"
                      if pairs else "-")
            lines.append(f"| {backend} | {_per_round(default)} | {_per_round(applied)} | {speedup} | {memory} "
                         f"| {faults} |")
        first = next(r for rs in all_results.values() for r in rs)
        others = {k: v for k, v in first.items() if k != setting}
        lines += ["", f"HIRI-ViT-S@448, batch {batch}, median of {first['repeats']} timed batches per process, "
                      "each process fresh, without and with the setting alternated" + speed_settings(others)]
        return "\n".join(lines)

    return table


def run_worker(script, spec, backend, title):
    """Runs ``script --worker SPEC`` in a fresh process on ``backend``; returns
    the JSON line it printed last, or the spec with an ``error`` (reported)."""
    env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.run([sys.executable, script, "--worker", json.dumps(spec)],
                          env=env, capture_output=True, text=True)
    return worker_result(spec, backend, title, proc.returncode, proc.stdout, proc.stderr)


def worker_result(spec, backend, title, returncode, stdout, stderr):
    """A finished worker's result: the JSON line it printed last, or the spec
    with an ``error`` (reported) where it failed or printed none."""
    lines = [ln for ln in stdout.splitlines() if ln.startswith("{")]
    if returncode or not lines:
        print(f"\n[{backend}] {title} failed:\n{stderr[-3000:]}", file=sys.stderr)
        return {**spec, "backend": backend, "error": stderr[-300:]}
    return json.loads(lines[-1])


def label(r):
    if r["model"] in PEERS:
        return r["model"]
    extra = " pinned" if r.get("pinned") else (" folded" if r.get("folded") else "")
    return f"HIRI-ViT-{r['model']}{extra}"


def find(results, model, resolution, **flags):
    for r in results:
        if r.get("pair") or r.get("gemm") or "error" in r:
            continue
        if (r["model"], r["resolution"]) == (model, resolution) and all(
            bool(r.get(k)) == v for k, v in flags.items()
        ):
            return r
    return None


def ratios(results):
    """P1, P2 (pinned and plain), P4 and G where their rows were measured."""
    s448 = find(results, "S", 448, pinned=False, folded=False)
    out = {}
    if s448 is None:
        return out
    gemm = _gemm(results)
    if gemm and "gmacs" in s448:
        out["G"] = s448["gmacs"] * s448["images_per_s"] / gemm["gmac_per_s"]
    cnt = find(results, "ConvNeXtTiny", 224)
    if cnt:
        out["P1"] = s448["images_per_s"] / cnt["images_per_s"]
        out["M"] = s448["peak_mib"] / max(cnt["peak_mib"], 1e-9)
        if "steady_peak_mib" in s448 and "steady_peak_mib" in cnt:
            out["M_steady"] = s448["steady_peak_mib"] / max(cnt["steady_peak_mib"], 1e-9)
    pinned = find(results, "S", 224, pinned=True)
    if pinned:
        out["P2"] = s448["median_s"] / pinned["median_s"]
    plain = find(results, "S", 224, pinned=False, folded=False)
    if plain:
        out["P2_plain"] = s448["median_s"] / plain["median_s"]
    pair = next((r for r in results if r.get("pair") and "error" not in r), None)
    if pair:
        out["P4"] = pair["P4"]
    return out


TARGETS = {"P1": (">=", 1.0), "P2": ("<=", 1.3), "P2_plain": ("<=", 1.3), "P4": (">=", 1.07),
           "G": (">=", 0.5), "M": ("<=", 1.0), "M_steady": ("<=", 1.0)}
DEFINITIONS = {
    "P1": "thr(S@448) / thr(ConvNeXtTiny@224)",
    "P2": "time(S@448) / time(S@224, pinned grids)",
    "P2_plain": "time(S@448) / time(S@224, plain schedule)",
    "P4": "thr(S@448 folded) / thr(S@448), timed alternately in one process",
    "G": "GMAC/s(S@448) / the dense GEMM's GMAC/s (its share of the machine's limit)",
    "M": "peak MiB(S@448) / peak MiB(ConvNeXtTiny@224), first call (compile) included",
    "M_steady": "the same, steady-state inference only (after warm-up)",
}


def _meets(key, value):
    """Whether ``value`` meets the target of ratio ``key`` (:data:`TARGETS`)."""
    op, target = TARGETS[key]
    return value >= target if op == ">=" else value <= target


def _memory_cell(r):
    steady = r.get("steady_peak_mib")  # absent from JSON written before it was measured
    return f"{r['peak_mib']:.0f}" + (f" ({steady:.0f})" if steady is not None else "")


def markdown(all_results, batch):
    backends = list(all_results)
    peak = {b: (_gemm(all_results[b]) or {}).get("gmac_per_s") for b in backends}
    head = "| model | input | GMACs | " + " | ".join(
        f"{b} img/s | {b} ms/batch | {b} GMAC/s (% of GEMM peak) | {b} peak MiB (steady)"
        for b in backends
    )
    lines = [head + " |", "|---|---|---|" + "---|" * (4 * len(backends))]
    lines.append(f"| dense float32 GEMM {GEMM_SIZE}³ (the machine's limit) | - | - | " + " | ".join(
        f"- | - | {peak[b]:.1f} (100 %) | -" if peak[b] else "- | - | failed | -" for b in backends
    ) + " |")
    keys = []
    for r in next(iter(all_results.values())):
        if r.get("pair") or r.get("gemm"):
            continue
        keys.append((r["model"], r["resolution"], bool(r.get("pinned")), bool(r.get("folded")), label(r)))
    for model, res, pinned, folded, name in keys:
        cells, gmacs = [], "-"
        for b in backends:
            r = find(all_results[b], model, res, pinned=pinned, folded=folded)
            if r is None:
                cells += ["failed", "-", "-", "-"]
            else:
                gmacs = f"{r['gmacs']:.2f}"
                rate = r["gmacs"] * r["images_per_s"]
                share = f" ({100 * rate / peak[b]:.0f} %)" if peak[b] else ""
                cells += [f"{r['images_per_s']:.2f}", f"{1000 * r['median_s']:.0f}",
                          f"{rate:.1f}{share}", _memory_cell(r)]
        lines.append(f"| {name} | {res} | {gmacs} | " + " | ".join(cells) + " |")
    lines += ["", "| ratio | definition | target | " + " | ".join(backends) + " |",
              "|---|---|---|" + "---|" * len(backends)]
    per_backend = {b: ratios(all_results[b]) for b in backends}
    for key, (op, target) in TARGETS.items():
        cells = []
        for b in backends:
            value = per_backend[b].get(key)
            if value is None:
                cells.append("-")
            else:
                cells.append(f"{value:.2f} {'(met)' if _meets(key, value) else '(missed)'}")
        lines.append(f"| {key} | {DEFINITIONS[key]} | {op} {target} | " + " | ".join(cells) + " |")
    s448 = {b: find(all_results[b], "S", 448, pinned=False, folded=False) for b in backends}
    if s448.get("tensorflow"):
        lines += ["", "| across backends | definition | target | value |", "|---|---|---|---|"]
        for b in backends:
            if b != "tensorflow" and s448.get(b):
                value = s448[b]["images_per_s"] / s448["tensorflow"]["images_per_s"]
                verdict = "met" if value >= 0.8 else "missed"
                lines.append(f"| T_{b} | thr(S@448, {b}) / thr(S@448, tensorflow) | >= 0.8 | "
                             f"{value:.2f} ({verdict}) |")
    first = {b: next(r for r in all_results[b] if not r.get("gemm")) for b in backends
             if any(not r.get("gemm") for r in all_results[b])}
    compile_modes = ", ".join(f"{b}: {r['compile']}" for b, r in first.items())
    chosen = ", ".join(next(iter(first.values())).get("generic", []))
    lines += [
        "",
        f"batch {batch}, median of {next(iter(first.values()))['repeats']} timed batches after warm-up; "
        f"compile mode: {compile_modes}; generic ops: {chosen or 'none'}"
        + speed_settings(next(iter(first.values()))),
    ]
    return "\n".join(lines)


# Environment variables that change the speed or memory of every model in a run
# (the workers inherit them): XLA's flags, and glibc's allocator thresholds.
SPEED_ENVIRONMENT = ("XLA_FLAGS", "MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")


def speed_settings(result=None):
    """``"; NAME=value"`` for each variable of ``SPEED_ENVIRONMENT`` this run sets,
    and the process settings its workers applied (``result``: one of the run's
    results), for a table's footer: a run under non-default settings says so."""
    text = "".join(f"; {name}={os.environ[name]}" for name in SPEED_ENVIRONMENT
                   if os.environ.get(name))
    for name in PROCESS_SETTINGS:
        if result and result.get(name):
            text += f"; {setting_call(name)} in every model's process"
    return text


# benchmarks/process_settings.py's settings (name: what it does, the function
# its workers call first, that function's arguments), each an option of every
# benchmark (--retain-freed-memory, ...). The library sets none of them.
PROCESS_SETTINGS = {
    "retain_freed_memory": ("glibc keeps freed memory instead of re-faulting it", "retain_freed_memory", {}),
    "disable_ynnpack_fusions": (
        "JAX: XLA's own CPU kernels instead of YNNPACK's fusions", "disable_ynnpack_fusions", {}),
    "keep_ynnpack_reductions": (
        "JAX: XLA's own CPU kernels, YNNPACK's fusions for reductions only", "disable_ynnpack_fusions",
        {"keep": ("reduce",)}),
}


def setting_call(name):
    """The call a process setting makes, as text: ``process_settings.f(...)``."""
    _, function, kwargs = PROCESS_SETTINGS[name]
    return f"process_settings.{function}(" + ", ".join(f"{k}={v!r}" for k, v in kwargs.items()) + ")"


# The options that time S@448 without and with one process setting, alternated.
ALTERNATE_OPTIONS = {"alternate-retain": "retain_freed_memory", "alternate-ynnpack": "disable_ynnpack_fusions",
                     "alternate-ynnpack-reductions": "keep_ynnpack_reductions"}


def benchmark_parser(doc, backends, warmup, repeats):
    """The arguments every benchmark script takes: ``--worker`` (internal),
    ``--backends``, ``--batch``, ``--warmup``, ``--repeats``, ``--json``."""
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--backends", nargs="+", default=list(backends), choices=backends)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--warmup", type=int, default=warmup)
    parser.add_argument("--repeats", type=int, default=repeats)
    parser.add_argument("--json", help="also write every result to this JSON file")
    return parser


def add_process_arguments(parser):
    """The options for process settings every benchmark's workers can apply."""
    for name, (text, _, _) in PROCESS_SETTINGS.items():
        parser.add_argument(f"--{name.replace('_', '-')}", action="store_true",
                            help=f"call {setting_call(name)} first in every model's process ({text}; "
                            "see its docstring)")


def process_settings(args):
    """The process settings a worker's spec carries, from the parsed options."""
    return {name: getattr(args, name) for name in PROCESS_SETTINGS}


def apply_process_settings(spec):
    """Applies the process settings a worker's spec asks for (before anything is
    allocated or compiled)."""
    chosen = [name for name in PROCESS_SETTINGS if spec.get(name)]
    if chosen:
        import process_settings as settings_module

        for name in chosen:
            _, function, kwargs = PROCESS_SETTINGS[name]
            getattr(settings_module, function)(**kwargs)


def worker_spec(text):
    """A worker's job (the JSON spec its parent passed), with its process settings applied."""
    spec = json.loads(text)
    apply_process_settings(spec)
    return spec


def _implementation_name(text):
    from implementations import IMPLEMENTATIONS

    if text not in IMPLEMENTATIONS:
        raise argparse.ArgumentTypeError(f"{text!r} is not an op implementation ({', '.join(IMPLEMENTATIONS)})")
    return text


def main(argv=None):
    parser = benchmark_parser(__doc__, BACKENDS, warmup=2, repeats=5)
    parser.add_argument("--prepare", help=argparse.SUPPRESS)
    parser.add_argument("--variants", nargs="+", default=["S", "B", "L"], choices=["S", "B", "L"])
    parser.add_argument("--resolutions", nargs="+", type=int, default=[224, 384, 448, 768])
    parser.add_argument(
        "--compile", choices=["auto", "jit", "none"], default=None,
        help="override the per-backend compile mode (default: "
        + ", ".join(f"{b} {m}" for b, m in DEFAULT_COMPILE.items()) + ")",
    )
    parser.add_argument(
        "--generic", action="append", default=[], type=_implementation_name, metavar="OP",
        help="build every row with the generic keras.ops op in place of this backend implementation "
        "(keras_hiri.ops; repeatable: depthwise, conv, init, attention)",
    )
    parser.add_argument("--quick", action="store_true", help="only the rows the ratios need")
    add_process_arguments(parser)
    for option, setting in ALTERNATE_OPTIONS.items():
        parser.add_argument(
            f"--{option}", type=int, default=0, metavar="ROUNDS",
            help=f"instead of the table: S@448 without and with {setting_call(setting)}, alternated ROUNDS "
            "times in fresh processes, and the speed-up",
        )
    parser.add_argument(
        "--kernel-pair", type=_implementation_name, metavar="OP", default=None,
        help="instead of the table: S@448 with the backend implementation of OP (e.g. conv) and with the "
        "generic op, "
        "the two models timed alternately in one process, --pair-rounds processes per backend",
    )
    parser.add_argument("--pair-rounds", type=int, default=3, help="processes per backend for --kernel-pair")
    parser.add_argument(
        "--alternate-models", type=int, default=0, metavar="ROUNDS",
        help="instead of the table: S@448, ConvNeXtTiny@224 and pinned S@224 in fresh processes, ROUNDS "
        "rounds, and P1, P2, M as medians of per-round ratios",
    )
    parser.add_argument(
        "--alternate-backends", type=int, default=0, metavar="ROUNDS",
        help="instead of the table: S@448 on each backend in fresh processes, the backends alternated "
        "ROUNDS times, and T_b from per-round ratios",
    )
    args = parser.parse_args(argv)
    if args.prepare:
        prepare(json.loads(args.prepare))
        return
    if args.worker:
        spec = worker_spec(args.worker)
        worker = (measure_gemm if spec.get("gemm") else measure_pair if spec.get("pair")
                  else measure_kernel_pair if spec.get("kernel_pair") else measure)
        print(json.dumps(worker(spec)))
        return
    if args.warmup < 1 or args.repeats < 1 or args.batch < 1:
        parser.error("--warmup, --repeats and --batch must be >= 1")
    if args.kernel_pair:
        run_and_report(args, args.pair_rounds, run_kernel_pairs, kernel_pair_table)
        return
    if args.alternate_models:
        run_and_report(args, len(RATIO_ROWS), functools.partial(run_ratio_rows, {}), model_rounds_table,
                       rounds=args.alternate_models)
        return
    if args.alternate_backends:
        run_and_report(args, 1, run_s448, backend_rounds_table, rounds=args.alternate_backends)
        return
    for option, setting in ALTERNATE_OPTIONS.items():
        rounds = getattr(args, option.replace("-", "_"))
        if rounds:
            run_and_report(args, 2 * rounds, functools.partial(run_setting_pairs, setting, rounds),
                           setting_table(setting))
            return
    run_and_report(args, len(jobs(args)), run_backend, markdown)


def benchmark_main(parser, argv, measure, rows_per_backend, run_backend, table,
                   positive=("batch", "warmup", "repeats")):
    """The main of a benchmark script: in a worker (``--worker SPEC``) measures
    the spec and prints the result as JSON; otherwise checks that the
    ``positive`` options are >= 1 and runs every backend (:func:`run_and_report`)."""
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(measure(worker_spec(args.worker))))
        return None
    if min(getattr(args, name) for name in positive) < 1:
        flags = [f"--{name.replace('_', '-')}" for name in positive]
        parser.error(f"{', '.join(flags[:-1])} and {flags[-1]} must be >= 1")
    return run_and_report(args, rows_per_backend, run_backend, table)


def run_and_report(args, rows_per_backend, run_backend, table, rounds=1):
    """Runs every backend's rows ``rounds`` times, the backends alternated in
    each round (a progress bar over all), prints ``table`` of the results,
    writes them to ``args.json`` when given, and returns them by backend."""
    from keras.utils import Progbar

    progress = Progbar(rows_per_backend * len(args.backends) * rounds, unit_name="model")
    all_results = {b: [] for b in args.backends}
    for _ in range(rounds):
        for b in args.backends:
            all_results[b] += run_backend(b, args, progress)
    print(table(all_results, args.batch))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(all_results, f, indent=1)
    return all_results


if __name__ == "__main__":
    main()
