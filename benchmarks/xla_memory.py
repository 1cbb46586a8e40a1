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
  produced them.

Every compiled figure is deterministic for a given jaxlib: no machine noise.

    python benchmarks/xla_memory.py
    XLA_FLAGS=--xla_cpu_enable_concurrency_optimized_scheduler=false python benchmarks/xla_memory.py
"""

import argparse
import json
import os
import re
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from throughput import (  # noqa: E402  (shared by the benchmarks)
    add_process_arguments, apply_process_settings, build, label, process_settings, run_and_report, run_worker,
    speed_settings,
)

MIB = 2.0**20
ROWS = [
    {"model": "S", "resolution": 448},
    {"model": "S", "resolution": 224, "pinned": True},
    {"model": "ConvNeXtTiny", "resolution": 224},
]
MODULE = "jit_inference"


def compile_and_dump(spec):
    """Compiles the model's inference function (with XLA's dump on, see
    :func:`measure`); returns ``memory_analysis()``'s figures in bytes."""
    import jax

    model = build(spec)
    trainable = [v.value for v in model.trainable_variables]
    non_trainable = [v.value for v in model.non_trainable_variables]

    def inference(trainable, non_trainable, x):
        return model.stateless_call(trainable, non_trainable, x, training=False)[0]

    inference.__name__ = MODULE.removeprefix("jit_")
    size = spec["resolution"]
    x = jax.ShapeDtypeStruct((spec["batch"], size, size, 3), "float32")
    analysis = jax.jit(inference).lower(trainable, non_trainable, x).compile().memory_analysis()
    return {
        "arguments": analysis.argument_size_in_bytes,
        "temp": analysis.temp_size_in_bytes,
        "output": analysis.output_size_in_bytes,
    }


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
    with tempfile.TemporaryDirectory() as dump_dir:
        flags = os.environ.get("XLA_FLAGS", "")
        os.environ["XLA_FLAGS"] = (f"{flags} --xla_dump_to={dump_dir} --xla_dump_hlo_module_re={MODULE} "
                                   "--xla_dump_hlo_pass_re=NONE").strip()
        apply_process_settings(spec)  # after the dump flags: XLA reads its flags once
        result = compile_and_dump(spec)
        peak, where, at_peak = peak_live_set(
            _dump_file(dump_dir, "cpu_after_optimizations-buffer-assignment.txt"),
            _dump_file(dump_dir, "cpu_after_optimizations-live-range.txt"),
            _dump_file(dump_dir, "cpu_after_optimizations.txt"),
        )
    broadcasts = sum(size for size, name, _, _ in at_peak if "broadcast" in name)
    return {**spec, **result, "peak_live": peak, "peak_at": where, "broadcasts_at_peak": broadcasts,
            "largest_at_peak": [list(v) for v in at_peak[:4]]}


def markdown(results):
    lines = [
        "| model | input | weights + input MiB | temp MiB | live at peak MiB | broadcasts at peak MiB "
        "| peak in layer | largest buffers live at the peak (MiB, shape, layer) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        if "error" in r:
            lines.append(f"| {label(r)} | {r['resolution']} | failed | | | | | |")
            continue
        largest = "; ".join(f"{size / MIB:.1f} {shape} {layer}" for size, _, shape, layer in r["largest_at_peak"])
        lines.append(
            f"| {label(r)} | {r['resolution']} | {r['arguments'] / MIB:.0f} | {r['temp'] / MIB:.0f} | "
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
    lines += ["", f"JAX, CPU, batch {results[0]['batch']}, float32, compiled inference (no timing)"
                  + speed_settings(results[0])]
    return "\n".join(lines)


def run_backend(backend, args, progress):
    results = []
    for row in ROWS:
        spec = {**row, "batch": args.batch, **process_settings(args)}
        results.append(run_worker(__file__, spec, backend, label(spec)))
        progress.add(1)
    return results


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--json", help="also write every result to this JSON file")
    add_process_arguments(parser)
    parser.set_defaults(backends=["jax"])  # XLA's buffer assignment: JAX only
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(measure(json.loads(args.worker))))
        return
    if args.batch < 1:
        parser.error(f"--batch must be >= 1. Received: {args.batch}")
    run_and_report(args, len(ROWS), run_backend, lambda results, batch: markdown(results["jax"]))


if __name__ == "__main__":
    main()
