"""Where JAX's inference memory goes: XLA's own buffer accounting, per model.

``benchmarks/throughput.py`` measures the peak resident memory of a process
(M = S@448 / ConvNeXtTiny@224). This script explains the JAX figure from the
compiler's side, without timing anything: each model is built in a fresh
process (``jax`` backend), its batch-8 inference function (``stateless_call``,
``training=False``) is lowered and compiled for the CPU, and the table gives

* ``weights``: XLA's argument buffers (the weights and the input batch);
* ``temp``: XLA's preallocated temporary buffer, i.e. what the activations of
  one call occupy (``compiled.memory_analysis()``);
* ``live at peak``: the largest sum of live temporaries at any point of XLA's
  schedule (from the buffer-assignment dump), and where in the network it is;
* ``broadcasts at peak``: how much of it is constants broadcast to a full
  activation shape (XLA's CPU library fusions take them as materialised
  operands), and the largest buffers live at the peak with the layer that
  produced them;
* ``fusions``: the compiled program's fusions, those XLA emits code for
  itself (its fusion emitters) and those it hands to a library (YNNPACK on
  the CPU). The compiler's peak memory grows with the first kind.

Every compiled figure is deterministic for a given jaxlib: no machine noise.

A second table follows the same process's resident memory (Linux RSS, the
C heap's free pages returned to the OS before each reading) through the
stages that make up the peak ``throughput.py`` reports:

* ``model``: what building the model added once JAX is running (its weights,
  Keras' layers, and what the eager build left behind);
* ``input batch``: the device array of the batch it is called on;
* ``compiling``: the compiler's own peak above those, while it compiles;
* ``kept after compiling``: what stays resident once it has compiled, and
  ``of which the executable``: what deleting the compiled executable (after
  the calls) gives back. The rest is freed compiler memory that the C heap
  cannot return, its pages pinned by the few blocks still in use among them;
* ``one call``: the peak of one steady call above the idle process, beside
  XLA's ``temp`` + output buffers: the difference is memory XLA does not
  account for, the workspaces its library kernels (YNNPACK on the CPU)
  allocate for themselves while they run.

``--stem-convs`` instead runs each of the HR stem's convolutions alone, with
the shapes they have in HIRI-ViT-S at 448 (batch 8), one process each: whether
XLA gives it to YNNPACK, its median time, and the same one-call figures. The
HR stem is where S@448's call needs memory outside XLA's buffers.

    python benchmarks/xla_memory.py --stem-convs
    XLA_FLAGS=--xla_cpu_experimental_ynn_fusion_type= python benchmarks/xla_memory.py --stem-convs

    python benchmarks/xla_memory.py
    XLA_FLAGS=--xla_cpu_enable_concurrency_optimized_scheduler=false python benchmarks/xla_memory.py

``--compiler-option NAME=VALUE`` (repeatable) compiles each model's inference
with that XLA option for its executable alone (``jax.jit(...,
compiler_options=...)``), where ``XLA_FLAGS`` sets it for every program of
the process:

    python benchmarks/xla_memory.py --compiler-option xla_cpu_use_fusion_emitters=false
"""

import argparse
import json
import os
import re
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from throughput import (  # noqa: E402  (shared by the benchmarks)
    add_process_arguments, apply_process_settings, build, label, peak_rss_mib, process_settings, release_free_heap,
    reset_peak_rss, rss_mib, run_and_report, run_worker, speed_settings,
)

MIB = 2.0**20
ROWS = [
    {"model": "S", "resolution": 448},
    {"model": "S", "resolution": 224, "pinned": True},
    {"model": "ConvNeXtTiny", "resolution": 224},
]
MODULE = "jit_inference"
# The HR stem's convolutions (keras_hiri/layers/stem.py): name, input channels (None:
# the stem's width), stride, kernel size, and the input grid as a fraction of
# the image's side.
STEM_CONVS = (
    ("conv", 3, 2, 3, 1),
    ("hi_conv, lo_conv1", None, 2, 3, 2),
    ("lo_conv2", None, 1, 3, 4),
    ("lo_conv3", None, 1, 1, 4),
)


def _settled_rss_mib():
    """The resident set once garbage is collected and the C heap's free pages
    are back with the OS."""
    release_free_heap()
    return rss_mib()


def _one_call_mib(call):
    """The resident peak of ``call()`` above the settled process before it."""
    idle = _settled_rss_mib()
    reset_peak_rss()
    call()
    return peak_rss_mib() - idle


def compile_and_dump(spec):
    """Builds the model, compiles its inference function (with XLA's dump on,
    see :func:`measure`) and runs it; returns ``memory_analysis()``'s figures
    in bytes and the process's resident MiB at each stage (module docstring)."""
    import jax
    import keras  # noqa: F401  (imported, like JAX started, before the first reading: neither is the model's)
    import numpy as np

    import keras_hiri  # noqa: F401

    jax.numpy.zeros(1).block_until_ready()
    start = _settled_rss_mib()
    model = build(spec)
    jax.clear_caches()  # the build's eager initialisers' executables (throughput.measure does the same)
    built = _settled_rss_mib()
    trainable = [v.value for v in model.trainable_variables]
    non_trainable = [v.value for v in model.non_trainable_variables]

    def inference(trainable, non_trainable, x):
        return model.stateless_call(trainable, non_trainable, x, training=False)[0]

    inference.__name__ = MODULE.removeprefix("jit_")
    size = spec["resolution"]
    x = jax.device_put(np.random.default_rng(0).uniform(0, 255, (spec["batch"], size, size, 3)).astype("float32"))
    with_input = _settled_rss_mib()
    reset_peak_rss()
    options = spec.get("compiler_options") or None
    compiled = jax.jit(inference, compiler_options=options).lower(trainable, non_trainable, x).compile()
    compiling = peak_rss_mib()
    kept = _settled_rss_mib()
    for _ in range(2):
        compiled(trainable, non_trainable, x).block_until_ready()
    one_call = _one_call_mib(lambda: compiled(trainable, non_trainable, x).block_until_ready())
    analysis = compiled.memory_analysis()
    called = _settled_rss_mib()
    compiled = None  # the last reference to the executable (the one-call lambda above is done with it)
    jax.clear_caches()  # JAX's own references to it
    return {
        "arguments": analysis.argument_size_in_bytes,
        "temp": analysis.temp_size_in_bytes,
        "output": analysis.output_size_in_bytes,
        "rss_model_mib": built - start,
        "rss_input_mib": with_input - built,
        "rss_compiling_mib": compiling - with_input,
        "rss_program_kept_mib": kept - with_input,
        "rss_executable_mib": called - _settled_rss_mib(),
        "rss_one_call_mib": one_call,
    }


def measure_conv(spec):
    """One stem convolution alone (``spec["conv"]`` indexes :data:`STEM_CONVS`),
    jitted as ``lax.conv_general_dilated`` with the symmetric padding of
    ``keras_hiri.layers.conv.conv2d`` (what the stem's ``Conv2D`` runs on JAX)."""
    import jax
    import numpy as np

    import keras_hiri
    from keras_hiri.profiling import time_calls

    name, channels, stride, kernel, fraction = STEM_CONVS[spec["conv"]]
    width = keras_hiri.variants.get_config(spec["model"]).widths[0]
    channels = channels or width
    side = spec["resolution"] // fraction
    rng = np.random.default_rng(0)
    x = jax.device_put(rng.standard_normal((spec["batch"], side, side, channels), "float32"))
    w = jax.device_put(rng.standard_normal((kernel, kernel, channels, width), "float32"))
    pad = [(kernel // 2, kernel // 2)] * 2

    def convolution(x, w):
        return jax.lax.conv_general_dilated(x, w, (stride, stride), pad,
                                            dimension_numbers=("NHWC", "HWIO", "NHWC"))

    compiled = jax.jit(convolution).lower(x, w).compile()
    median, _ = time_calls(lambda: compiled(x, w).block_until_ready(), 2, spec["repeats"])
    one_call = _one_call_mib(lambda: compiled(x, w).block_until_ready())
    analysis = compiled.memory_analysis()
    return {**spec, "name": name, "shape": f"{channels}->{width} {kernel}x{kernel}/{stride} on {side}x{side}",
            "ynnpack": "__ynn_fusion" in compiled.as_text(), "median_s": median,
            "temp": analysis.temp_size_in_bytes, "output": analysis.output_size_in_bytes,
            "rss_one_call_mib": one_call}


def conv_markdown(results):
    lines = [
        "| convolution | shape | YNNPACK | ms per call | one call MiB | XLA's temp + output MiB |",
        "|---|---|---|---|---|---|",
    ]
    for r in results:
        if "error" in r:
            lines.append(f"| {STEM_CONVS[r['conv']][0]} | failed | | | | |")
            continue
        xla = (r["temp"] + r["output"]) / MIB
        lines.append(f"| {r['name']} | {r['shape']} | {'yes' if r['ynnpack'] else 'no'} | {1000 * r['median_s']:.1f} | "
                     f"{r['rss_one_call_mib']:.0f} | {xla:.0f} |")
    first = results[0]
    lines += ["", f"the HR stem's convolutions in HIRI-ViT-{first['model']}@{first['resolution']}, batch "
                  f"{first['batch']}, float32, each alone in a fresh process (JAX, CPU), median of "
                  f"{first['repeats']} calls" + speed_settings(first) + "; one call: the resident peak of a call "
                  "above the idle process, whose output may reuse the previous call's freed buffer"]
    return "\n".join(lines)


def _dump_file(dump_dir, suffix):
    names = [n for n in os.listdir(dump_dir) if MODULE in n and n.endswith(suffix)]
    if len(names) != 1:
        raise RuntimeError(f"expected one {MODULE} dump ending in {suffix!r} in {dump_dir}, got {names}")
    with open(os.path.join(dump_dir, names[0])) as f:
        return f.read()


def peak_live_set(buffer_assignment, live_ranges, hlo):
    """The temporaries live at the schedule's peak: ``(peak bytes, position's
    instruction, [(bytes, value, shape, layer)] largest first)``."""
    sequence, ranges, section = {}, {}, None
    for line in live_ranges.splitlines():
        if "InstructionSequence" in line or "BufferLiveRange" in line:
            section = line.strip()
            continue
        if section and section.startswith("InstructionSequence"):
            m = re.match(r"\s+(\d+):(\S+)", line)
            if m:
                sequence[int(m.group(1))] = m.group(2)
        elif section and section.startswith("BufferLiveRange"):
            m = re.match(r"\s+(\S+)\{.*\}:(\d+)-(\d+)", line)
            if m:
                ranges.setdefault(m.group(1), (int(m.group(2)), int(m.group(3))))
    values, in_temp = [], False  # (offset, size, value, shape) of each value in the temp buffer
    for line in buffer_assignment.splitlines():
        if line.startswith("allocation"):
            in_temp = "preallocated-temp" in line
        elif in_temp:
            m = re.match(r"\s*value: <\d+ (\S+) @\S*> \(size=(\d+),offset=(\d+)\): (\S+)", line)
            if m and m.group(1) in ranges:
                values.append((int(m.group(3)), int(m.group(2)), m.group(1), m.group(4).split("{")[0]))
    if not values:
        return 0, None, []

    def live_at(t):  # values live at t, and the bytes they cover (aliased values counted once)
        now = [v for v in values if ranges[v[2]][0] <= t <= ranges[v[2]][1]]
        covered, end = 0, 0
        for offset, size, _, _ in sorted(now):
            covered += max(0, offset + size - max(offset, end))
            end = max(end, offset + size)
        return now, covered

    peak_at = max(sorted({start for start, _ in ranges.values()}), key=lambda t: live_at(t)[1])
    now, peak = live_at(peak_at)
    layers = dict(re.findall(r"%(\S+) = .*?op_name=\"[^/\"]*/([^/\"]+)", hlo))
    one_per_buffer = {(offset, size): (size, name, shape, layers.get(name, "-"))
                      for offset, size, name, shape in sorted(now, key=lambda v: v[2])}
    at_peak = sorted(one_per_buffer.values(), reverse=True)
    return peak, layers.get(sequence.get(peak_at), sequence.get(peak_at)), at_peak


def measure(spec):
    if "conv" in spec:
        apply_process_settings(spec)
        return measure_conv(spec)
    with tempfile.TemporaryDirectory() as dump_dir:
        flags = os.environ.get("XLA_FLAGS", "")
        os.environ["XLA_FLAGS"] = (f"{flags} --xla_dump_to={dump_dir} --xla_dump_hlo_module_re={MODULE} "
                                   "--xla_dump_hlo_pass_re=NONE").strip()
        apply_process_settings(spec)  # after the dump flags: XLA reads its flags once
        result = compile_and_dump(spec)
        hlo = _dump_file(dump_dir, "cpu_after_optimizations.txt")
        peak, where, at_peak = peak_live_set(
            _dump_file(dump_dir, "cpu_after_optimizations-buffer-assignment.txt"),
            _dump_file(dump_dir, "cpu_after_optimizations-live-range.txt"),
            hlo,
        )
    broadcasts = sum(size for size, name, _, _ in at_peak if "broadcast" in name)
    return {**spec, **result, "peak_live": peak, "peak_at": where, "broadcasts_at_peak": broadcasts,
            "largest_at_peak": [list(v) for v in at_peak[:4]], "fusions": count_fusions(hlo)}


def count_fusions(hlo):
    """The fusions of an optimised HLO module's text: ``{"emitted": ...,
    "library": ...}``, those XLA generates code for (kinds kLoop, kInput,
    kOutput) and those it hands to a library (kCustom: YNNPACK on the CPU)."""
    kinds = re.findall(r" fusion\([^\n]*?kind=(k\w+)", hlo)
    library = sum(kind == "kCustom" for kind in kinds)
    return {"emitted": len(kinds) - library, "library": library}


def compiler_option(text):
    """``NAME=VALUE`` (an XLA option for one executable) as ``(NAME, value)``:
    ``true``/``false`` as booleans, integers as ints, anything else a string."""
    name, sep, value = text.partition("=")
    if not sep or not re.fullmatch(r"xla_\w+", name):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not NAME=VALUE with an XLA option name (xla_...), e.g. xla_cpu_use_fusion_emitters=false")
    if value.lower() in ("true", "false"):
        return name, value.lower() == "true"
    return name, int(value) if re.fullmatch(r"-?\d+", value) else value


def markdown(results):
    lines = [
        "| model | input | fusions (XLA's emitters + YNNPACK's) | weights + input MiB | temp MiB | live at peak MiB "
        "| broadcasts at peak MiB | peak in layer | largest buffers live at the peak (MiB, shape, layer) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        if "error" in r:
            lines.append(f"| {label(r)} | {r['resolution']} | failed | | | | | | |")
            continue
        largest = "; ".join(f"{size / MIB:.1f} {shape} {layer}" for size, _, shape, layer in r["largest_at_peak"])
        fusions = r.get("fusions")
        fusions = f"{fusions['emitted']} + {fusions['library']}" if fusions else "-"
        lines.append(
            f"| {label(r)} | {r['resolution']} | {fusions} | {r['arguments'] / MIB:.0f} | {r['temp'] / MIB:.0f} | "
            f"{r['peak_live'] / MIB:.0f} | {r['broadcasts_at_peak'] / MIB:.0f} | {r['peak_at']} | {largest} |"
        )
    s448 = next((r for r in results if r["model"] == "S" and r["resolution"] == 448 and "error" not in r), None)
    peer = next((r for r in results if r["model"] == "ConvNeXtTiny" and "error" not in r), None)
    if s448 and peer:
        lines += [
            "",
            "| ratio | definition | value |",
            "|---|---|---|",
            f"| M_temp | temp(S@448) / temp(ConvNeXtTiny@224) | {s448['temp'] / peer['temp']:.2f} |",
            f"| M_xla | (weights + temp)(S@448) / (weights + temp)(ConvNeXtTiny@224) | "
            f"{(s448['arguments'] + s448['temp']) / (peer['arguments'] + peer['temp']):.2f} |",
        ]
    options = results[0].get("compiler_options")
    lines += ["", f"JAX, CPU, batch {results[0]['batch']}, float32, compiled inference (no timing)"
                  + speed_settings(results[0])
                  + "".join(f"; compiler option {k}={v} for the executable" for k, v in (options or {}).items())]
    resident = [r for r in results if "rss_one_call_mib" in r]
    if resident:
        lines += [
            "",
            "| model | input | model MiB | input batch MiB | compiling MiB | kept after compiling MiB "
            "| of which the executable MiB | one call MiB | XLA's temp + output MiB "
            "| one call outside XLA's buffers MiB |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for r in resident:
            xla = (r["temp"] + r["output"]) / MIB
            lines.append(
                f"| {label(r)} | {r['resolution']} | {r['rss_model_mib']:.0f} | {r['rss_input_mib']:.0f} | "
                f"{r['rss_compiling_mib']:.0f} | {r['rss_program_kept_mib']:.0f} | {r['rss_executable_mib']:.0f} | "
                f"{r['rss_one_call_mib']:.0f} | {xla:.0f} | {round(r['rss_one_call_mib'] - xla)} |"
            )
        lines += ["", "resident memory (RSS) of the same process: what building the model added; the input batch; "
                      "the compiler's peak above them; what stays once it has compiled, and how much of that deleting "
                      "the executable (after the calls) returns; the peak of one steady call above the idle process"]
    return "\n".join(lines)


def run_backend(backend, args, progress):
    results = []
    if args.stem_convs:
        rows = [{"model": "S", "resolution": 448, "conv": i, "repeats": args.repeats} for i in range(len(STEM_CONVS))]
    else:
        rows = ROWS
    for row in rows:
        spec = {**row, "batch": args.batch, **process_settings(args)}
        if args.compiler_option:
            spec["compiler_options"] = dict(args.compiler_option)
        what = STEM_CONVS[row["conv"]][0] if "conv" in row else label(spec)
        results.append(run_worker(__file__, spec, backend, what))
        progress.add(1)
    return results


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--json", help="also write every result to this JSON file")
    parser.add_argument("--stem-convs", action="store_true",
                        help="time and measure the HR stem's convolutions alone instead of whole models")
    parser.add_argument("--repeats", type=int, default=10, help="timed calls per convolution (--stem-convs)")
    parser.add_argument("--compiler-option", type=compiler_option, action="append", metavar="NAME=VALUE",
                        help="compile each model's inference with this XLA option for its executable alone "
                             "(repeatable; whole models only)")
    add_process_arguments(parser)
    parser.set_defaults(backends=["jax"])  # XLA's buffer assignment: JAX only
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(measure(json.loads(args.worker))))
        return
    if args.batch < 1:
        parser.error(f"--batch must be >= 1. Received: {args.batch}")
    if args.repeats < 1:
        parser.error(f"--repeats must be >= 1. Received: {args.repeats}")
    if args.stem_convs and args.compiler_option:
        parser.error("--compiler-option applies to whole models, not to --stem-convs")
    rows, table = (STEM_CONVS, conv_markdown) if args.stem_convs else (ROWS, markdown)
    run_and_report(args, len(rows), run_backend, lambda results, batch: table(results["jax"]))


if __name__ == "__main__":
    main()
