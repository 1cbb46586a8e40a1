"""GPU inference throughput: HIRI-ViT-S/B/L at 224/448 against ConvNeXt-T/S/B, in three precisions.

Issue 10, item 7, side by side in one run on one GPU: img/s of HIRI-ViT-S/B/L
at 224 and 448 (plain stride schedule) and of ``keras.applications``
ConvNeXtTiny/Small/Base at 224 (``weights=None``), each under Keras' float32,
``mixed_bfloat16`` and ``mixed_float16`` policies (variables in float32,
computation in the half type: mixed precision as a user turns it on).

Every (model, resolution, precision) runs in a fresh process: build,
``predict_on_batch`` on a batch that already lives on the GPU (no host-to-device
copy is timed; the logits come back, which synchronises), ``warmup`` untimed
calls (compiling and autotuning happen there), then ``repeats`` timed calls;
the time is their median. ``--parallel K`` lets K processes build and compile
at once; they then wait for each other and take turns for the timed calls, so
no two time together and none is timed while another compiles.

The first rows are the GPU's dense GEMM rate per precision (``keras.ops.matmul``
of two 8192x8192 matrices, float32 or the half type): each model's achieved
TMAC/s (its multiply-adds x img/s) is reported as a share of it. float32
matmuls and convolutions run as each backend's default lets them (JAX: TF32
on the tensor cores; PyTorch: cuDNN convolutions in TF32, matmuls in float32);
each row records the setting.

Printed per precision: P1_gpu = thr(S@448) / thr(ConvNeXtTiny@224),
P2_gpu = time(S@448) / time(S@224 with the paper's pinned late grids),
P2_plain_gpu = the same against S@224 on the plain stride schedule (S@448 does
3.9x its MACs; no target), and S@448 against the
paper's 1490 img/s (Table II, measured on a V100; the paper gives neither
batch nor precision).

Each model row also times its bare forward pass: ``LOOP_CALLS`` batches queued
back to back, then one wait (JAX: ``jax.jit`` of ``model.stateless_call``;
PyTorch: the eager call under no_grad). ``predict_on_batch`` adds per-call host
work (gathering the state, converting the logits to NumPy, waiting for each
batch) that dominates small models on a fast GPU; the TMAC/s and the ratios use
the loop where it was measured.

    python benchmarks/gpu_throughput.py --json benchmarks/results/gpu_throughput_h200.json
    python benchmarks/gpu_throughput.py --backends jax torch --parallel 4
    python benchmarks/gpu_throughput.py --allow-cpu --variants S --resolutions 224 --peers \\
        --dtypes float32 --batch 2 --warmup 1 --repeats 2      # the path, on a CPU
"""

import argparse
import fcntl
import json
import os
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from throughput import benchmark_parser, build, worker_result  # noqa: E402

BACKENDS = ("jax", "torch")
PEERS = ("ConvNeXtTiny", "ConvNeXtSmall", "ConvNeXtBase")
POLICIES = {"float32": "float32", "bfloat16": "mixed_bfloat16", "float16": "mixed_float16"}
GEMM_SIZE = 8192
PAPER_S448 = 1490  # img/s, Table II (V100)
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _sync(x):
    """Waits for the device work that produces ``x``."""
    import keras

    if keras.backend.backend() == "jax":
        x.block_until_ready()
    elif keras.backend.backend() == "torch":
        import torch

        if torch.cuda.is_available():
            torch.cuda.synchronize()


def _float32_mode():
    """How float32 matmuls/convolutions run on this backend by default."""
    import keras

    if keras.backend.backend() == "jax":
        import jax

        return f"jax_default_matmul_precision={jax.config.jax_default_matmul_precision}"
    import torch

    return (f"matmul.allow_tf32={torch.backends.cuda.matmul.allow_tf32}, "
            f"cudnn.allow_tf32={torch.backends.cudnn.allow_tf32}")


def _device():
    import keras

    if keras.backend.backend() == "jax":
        import jax

        return jax.devices()[0].device_kind
    import torch

    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"


def _mark_ready(spec):
    """Tells the other processes of this wave that this one will not compile any more."""
    if spec.get("sync_dir"):
        open(os.path.join(spec["sync_dir"], f"ready-{spec['index']}"), "w").close()


def _take_turn(spec):
    """Waits until every process of this wave has compiled (or failed), then
    holds the timing lock (released when the process exits)."""
    sync_dir = spec.get("sync_dir")
    if not sync_dir:
        return None
    _mark_ready(spec)
    deadline = time.time() + 900
    while sum(n.startswith("ready-") for n in os.listdir(sync_dir)) < spec["wave"]:
        if time.time() > deadline:
            raise TimeoutError("the other processes of this wave never became ready")
        time.sleep(0.2)
    lock = open(os.path.join(sync_dir, "lock"), "w")
    fcntl.flock(lock, fcntl.LOCK_EX)
    return lock


def measure_gemm(spec):
    import keras
    import numpy as np

    from keras_hiri.profiling import time_calls

    n, calls = spec["resolution"], 10
    rng = np.random.default_rng(0)
    a, b = (keras.ops.convert_to_tensor(rng.normal(size=(n, n)).astype("float32"), dtype=spec["dtype"])
            for _ in "ab")

    def run():
        for _ in range(calls):
            out = keras.ops.matmul(a, b)
        _sync(out)

    lock = _take_turn(spec)
    median = time_calls(run, spec["warmup"], spec["repeats"])[0] / calls
    del lock
    return {**spec, "median_s": median, "tmac_per_s": n**3 / median / 1e12}


LOOP_CALLS = 10


def _forward(model, torch_compile=False):
    """The bare forward pass, without ``predict_on_batch``'s per-call work
    (gathering the state, converting the logits to NumPy): on JAX ``jax.jit``
    of the model's stateless call, on PyTorch the eager call under no_grad
    (through ``torch.compile`` with ``torch_compile``)."""
    import keras

    if keras.backend.backend() == "jax":
        import jax

        state = ([v.value for v in model.trainable_variables],
                 [v.value for v in model.non_trainable_variables])
        compiled = jax.jit(lambda tv, ntv, x: model.stateless_call(tv, ntv, x, training=False)[0])
        return lambda x: compiled(*state, x)
    import torch

    call = torch.compile(model) if torch_compile else model

    def run(x):
        with torch.no_grad():
            return call(x, training=False)

    return run


def _loop(forward, x):
    """``LOOP_CALLS`` forward passes queued back to back, then one wait."""
    for _ in range(LOOP_CALLS):
        out = forward(x)
    _sync(out)


def measure(spec):
    import keras
    import numpy as np

    import keras_hiri
    from keras_hiri.profiling import time_calls

    keras.utils.set_random_seed(0)
    keras.config.set_dtype_policy(POLICIES[spec["dtype"]])
    model = build(spec)  # the benchmarks' one builder: the HIRI-ViT variant (pinned or not) or the peer
    if spec.get("torch_compile"):  # predict_on_batch through torch.compile, as a user turns it on
        model.compile(jit_compile=True)
    gmacs = keras_hiri.profile(model).gmacs
    size = spec["resolution"]
    x = np.random.default_rng(0).uniform(0, 255, (spec["batch"], size, size, 3)).astype("float32")
    x = keras.ops.convert_to_tensor(x)  # on the GPU from here on

    start = time.perf_counter()
    model.predict_on_batch(x)
    first = time.perf_counter() - start
    for _ in range(max(spec["warmup"] - 1, 0)):
        model.predict_on_batch(x)
    forward = _forward(model, spec.get("torch_compile", False))
    time_calls(lambda: _loop(forward, x), 1, 1)  # compiles
    lock = _take_turn(spec)
    # The loop first: predict_on_batch on JAX donates the state buffers the loop holds.
    loop = time_calls(lambda: _loop(forward, x), 0, max(spec["repeats"] // 2, 1))[0] / LOOP_CALLS
    median, times = time_calls(lambda: model.predict_on_batch(x), 0, spec["repeats"])
    del lock
    return {**spec, "first_call_s": first, "median_s": median, "min_s": min(times),
            "images_per_s": spec["batch"] / median, "loop_s": loop, "loop_images_per_s": spec["batch"] / loop,
            "gmacs": gmacs,
            "params_m": model.count_params() / 1e6}


def worker(spec):
    import keras

    if not spec["allow_cpu"] and _device() == "cpu":
        raise RuntimeError(f"no GPU visible to {keras.backend.backend()} (pass --allow-cpu to run the path "
                           "on a CPU)")
    try:
        result = (measure_gemm if spec["model"] == "GEMM" else measure)(spec)
    except BaseException:
        _mark_ready(spec)  # the others of the wave need not wait for this one
        raise
    return {**result, "backend": keras.backend.backend(), "device": _device(),
            "float32_mode": _float32_mode()}


def jobs(args):
    """The rows, most important first (a run cut short still has the ratios)."""
    wanted = [(v, r, False) for v in args.variants for r in sorted(args.resolutions, reverse=True)]
    wanted += [(p, 224, False) for p in args.peers]
    if args.pinned and ("S", 224, False) in wanted:
        wanted.insert(wanted.index(("S", 224, False)), ("S", 224, True))
    first = [w for w in (("S", 448, False), ("ConvNeXtTiny", 224, False), ("S", 224, True), ("S", 224, False))
             if w in wanted]
    rows = ([("GEMM", args.gemm_size, False)] if args.gemm_size else []) + first
    rows += [w for w in wanted if w not in first]
    return [{"model": m, "resolution": r, "pinned": pinned, "dtype": d, "batch": args.batch,
             "warmup": args.warmup, "repeats": args.repeats, "allow_cpu": args.allow_cpu,
             "torch_compile": args.torch_compile}
            for m, r, pinned in rows for d in args.dtypes]


def run_wave(specs, backend, timeout):
    """Runs ``specs`` in parallel processes that take turns for their timed
    calls; returns their results (an ``error`` entry for a failed one)."""
    # The checkout's keras_hiri even where none is installed; JAX takes GPU memory as needed
    # (by default each process would claim 75 % of it).
    path = os.pathsep.join(filter(None, [REPO, os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "3",
           "XLA_PYTHON_CLIENT_PREALLOCATE": "false", "PYTHONPATH": path}
    with tempfile.TemporaryDirectory() as sync_dir:
        procs = []
        for i, spec in enumerate(specs):
            spec = {**spec, "sync_dir": sync_dir if len(specs) > 1 else None, "index": i, "wave": len(specs)}
            procs.append((spec, subprocess.Popen(
                [sys.executable, __file__, "--worker", json.dumps(spec)], env=env,
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)))
        results = []
        deadline = time.time() + timeout
        for spec, proc in procs:
            try:
                out, err = proc.communicate(timeout=max(deadline - time.time(), 1))
            except subprocess.TimeoutExpired:
                for _, p in procs:
                    p.kill()
                out, err = proc.communicate()
                err += f"\ntimed out after {timeout} s"
            results.append(worker_result(spec, backend, label(spec), proc.returncode, out, err))
    return results


def label(r):
    name = r["model"] if r["model"] in PEERS or r["model"] == "GEMM" else f"HIRI-ViT-{r['model']}"
    return (f"{name}@{r['resolution']}" + (" pinned" if r.get("pinned") else "")
            + (" torch.compile" if r.get("torch_compile") and r["model"] != "GEMM" else ""))


def _key(r):
    return r["model"], r["resolution"], bool(r.get("pinned"))


def _find(results, model, resolution, dtype, pinned=False):
    return next((r for r in results if "error" not in r and _key(r) == (model, resolution, pinned)
                 and r["dtype"] == dtype), None)


def _thr(r):
    """img/s of the bare forward loop where measured, else of predict_on_batch."""
    return r.get("loop_images_per_s", r["images_per_s"])


def ratios(results, dtype):
    """P1_gpu, P2_gpu, P2_plain_gpu and S@448's share of the paper's figure in one precision."""
    s448, s224 = _find(results, "S", 448, dtype), _find(results, "S", 224, dtype)
    pinned = _find(results, "S", 224, dtype, pinned=True)
    tiny = _find(results, "ConvNeXtTiny", 224, dtype)
    out = {}
    if s448 and tiny:
        out["P1_gpu"] = _thr(s448) / _thr(tiny)
    if s448 and pinned:
        out["P2_gpu"] = _thr(pinned) / _thr(s448)  # time(S@448) / time(S@224 pinned), same batch
    if s448 and s224:
        out["P2_plain_gpu"] = _thr(s224) / _thr(s448)  # time(S@448) / time(S@224), same batch
    if s448:
        out["S448_vs_paper"] = _thr(s448) / PAPER_S448
    return out


def markdown(all_results, batch, command):
    lines = []
    for backend, results in all_results.items():
        dtypes = list(dict.fromkeys(r["dtype"] for r in results))
        ok = [r for r in results if "error" not in r]
        device = ok[0]["device"] if ok else "?"
        lines += [f"### {backend} on {device}, batch {batch}", "",
                  "| model | " + " | ".join(f"{d} img/s | {d} TMAC/s (% of GEMM)" for d in dtypes) + " |",
                  "|---|" + "---:|---:|" * len(dtypes)]
        gemm = {d: next((r for r in ok if r["model"] == "GEMM" and r["dtype"] == d), None) for d in dtypes}
        size = next((r["resolution"] for r in results if r["model"] == "GEMM"), GEMM_SIZE)
        cells = [f"{gemm[d]['tmac_per_s']:.3g}" if gemm[d] else "failed" for d in dtypes]
        if any(r["model"] == "GEMM" for r in results):
            lines.append(f"| dense GEMM {size}³ | " + " | ".join(f"— | {c} TMAC/s" for c in cells) + " |")
        for key in dict.fromkeys(_key(r) for r in results if r["model"] != "GEMM"):
            row = []
            for d in dtypes:
                r = _find(results, *key[:2], d, pinned=key[2])
                if r is None:  # an error entry, or none: the run was cut short before this row
                    ran = any(_key(e) == key and e["dtype"] == d for e in results)
                    row.append(f"{'failed' if ran else 'not run'} | —")
                    continue
                tmacs = r["gmacs"] * _thr(r) / 1000
                share = f" ({100 * tmacs / gemm[d]['tmac_per_s']:.0f} %)" if gemm[d] else ""
                loop = f" / {r['loop_images_per_s']:.0f}" if "loop_images_per_s" in r else ""
                row.append(f"{r['images_per_s']:.0f}{loop} | {tmacs:.3g}{share}")
            lines.append(f"| {label({'model': key[0], 'resolution': key[1], 'pinned': key[2]})} | "
                         + " | ".join(row) + " |")
        lines += [""]
        for d in dtypes:
            ratio = ratios(results, d)
            parts = []
            if "P1_gpu" in ratio:
                parts.append(f"P1_gpu = {ratio['P1_gpu']:.2f} (target >= 1.0)")
            if "P2_gpu" in ratio:
                parts.append(f"P2_gpu = {ratio['P2_gpu']:.2f} (target <= 1.3)")
            if "P2_plain_gpu" in ratio:
                parts.append(f"P2_plain_gpu = {ratio['P2_plain_gpu']:.2f} (S@448 has 3.9x the MACs)")
            if "S448_vs_paper" in ratio:
                s = _thr(_find(results, "S", 448, d))
                parts.append(f"S@448 {s:.0f} img/s = {ratio['S448_vs_paper']:.2f}x the paper's {PAPER_S448}")
            if parts:
                lines.append(f"- {d}: " + "; ".join(parts))
        if ok:
            lines.append(f"- float32 mode: {ok[0]['float32_mode']}")
        if any(r.get("torch_compile") for r in ok):
            lines.append("- torch.compile: `predict_on_batch` with `jit_compile=True`, the loop through "
                         "`torch.compile(model)`")
        lines.append("")
    lines.append(f"`{command}`: one fresh process per row; img/s of `predict_on_batch` (median call) / of the "
                 f"bare forward pass, {LOOP_CALLS} batches queued back to back (where measured; the TMAC/s "
                 "and the ratios use it).")
    return "\n".join(lines)


def main(argv=None):
    parser = benchmark_parser(__doc__, BACKENDS, warmup=3, repeats=10)
    parser.set_defaults(backends=["jax"], batch=128)
    parser.add_argument("--variants", nargs="*", default=["S", "B", "L"], choices=["S", "B", "L"])
    parser.add_argument("--resolutions", nargs="+", type=int, default=[224, 448])
    parser.add_argument("--peers", nargs="*", default=list(PEERS), choices=PEERS)
    parser.add_argument("--dtypes", nargs="+", default=list(POLICIES), choices=list(POLICIES))
    parser.add_argument("--parallel", type=int, default=4,
                        help="processes building and compiling at once (they take turns to be timed)")
    parser.add_argument("--timeout", type=float, default=600, help="seconds per wave of processes")
    parser.add_argument("--allow-cpu", action="store_true", help="run even where no GPU is visible")
    parser.add_argument("--pinned", action=argparse.BooleanOptionalAction, default=True,
                        help="also S@224 with the paper's pinned late grids (the issue's P2)")
    parser.add_argument("--gemm-size", type=int, default=GEMM_SIZE, help="side of the GEMM rows' matrices")
    parser.add_argument("--torch-compile", action="store_true",
                        help="PyTorch: predict_on_batch with jit_compile=True and the loop through torch.compile "
                             "(Keras' torch backend runs eagerly by default)")
    parser.add_argument("--table", metavar="JSON", help="only print the table of a saved --json run")
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(json.loads(args.worker))))
        return
    if args.table:
        with open(args.table) as f:
            saved = json.load(f)
        print(markdown(saved["results"], saved["batch"], saved["command"]))
        return
    if min(args.warmup, args.repeats, args.batch, args.parallel) < 1:
        parser.error("--warmup, --repeats, --batch and --parallel must be >= 1")
    from keras.utils import Progbar

    command = " ".join(["python benchmarks/gpu_throughput.py", *(argv if argv is not None else sys.argv[1:])])
    rows = jobs(args)
    all_results = {b: [] for b in args.backends}
    progress = Progbar(len(rows) * len(args.backends), unit_name="model")
    for backend in args.backends:
        for start in range(0, len(rows), args.parallel):
            wave = rows[start:start + args.parallel]
            all_results[backend] += run_wave(wave, backend, args.timeout)
            progress.add(len(wave))
            if args.json:  # after every wave: a run cut short keeps what it measured
                with open(args.json, "w") as f:
                    json.dump({"command": command, "batch": args.batch, "results": all_results}, f, indent=1)
    print(markdown(all_results, args.batch, command))


if __name__ == "__main__":
    main()
