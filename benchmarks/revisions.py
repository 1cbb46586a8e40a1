"""S@448 inference at two git revisions, alternated in fresh processes, with ConvNeXtTiny@224.

Checks out ``--before`` (default: the parent of HEAD) into a temporary git
worktree, then in every round and for every backend times, each in a fresh
process through ``benchmarks/throughput.py``'s worker: HIRI-ViT-S@448 of the
old tree, HIRI-ViT-S@448 of this tree and keras.applications' ConvNeXtTiny@224.
Prints each model's s/batch per round and, as medians of per-round ratios,
``after / before`` (throughput kept) and ``P1 = thr(S@448) / thr(ConvNeXtTiny@224)``.

    python benchmarks/revisions.py --before 7797bf2 --rounds 2 --repeats 3
"""

import json
import os
import statistics
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
from throughput import BACKENDS, PROCESS_SETTINGS, S448, benchmark_parser, job_spec  # noqa: E402

CONVNEXT = {"model": "ConvNeXtTiny", "resolution": 224}


def run(tree, spec, backend):
    """One worker of ``tree``'s throughput.py (its own keras_hiri first on the path)."""
    env = {**os.environ, "KERAS_BACKEND": backend, "PYTHONPATH": tree}
    out = subprocess.run([sys.executable, os.path.join(tree, "benchmarks", "throughput.py"), "--worker",
                          json.dumps(spec)], env=env, capture_output=True, text=True, cwd=tree)
    lines = [line for line in out.stdout.splitlines() if line.startswith("{")]
    return json.loads(lines[-1])["median_s"] if out.returncode == 0 and lines else None


def main(argv=None):
    parser = benchmark_parser(__doc__, BACKENDS, warmup=2, repeats=3)
    parser.add_argument("--before", default="HEAD~1", help="the git revision to compare against")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args(argv)
    args.compile, args.generic = None, []  # the backends' defaults, every op implementation, no setting
    for name in PROCESS_SETTINGS:
        setattr(args, name, False)
    with tempfile.TemporaryDirectory() as tmp:
        old = os.path.join(tmp, "before")
        subprocess.run(["git", "-C", ROOT, "worktree", "add", "--detach", old, args.before], check=True,
                       capture_output=True)
        try:
            times = {b: {"before": [], "after": [], "convnext": []} for b in args.backends}
            for r in range(args.rounds):
                for b in args.backends:
                    order = [("before", old, S448), ("after", ROOT, S448), ("convnext", ROOT, CONVNEXT)]
                    for key, tree, row in order if r % 2 == 0 else order[::-1]:
                        times[b][key].append(run(tree, job_spec(row, b, args), b))
                        print(f"round {r + 1} {b} {key}: {times[b][key][-1]}", flush=True)
        finally:
            subprocess.run(["git", "-C", ROOT, "worktree", "remove", "--force", old], capture_output=True)
    print("\n| backend | S@448 before, s/batch | S@448 after | ConvNeXtTiny@224 | after / before (thr) | P1 after |")
    print("|---|---|---|---|---|---|")
    for b, t in times.items():
        rounds = [i for i in range(args.rounds) if None not in (t["before"][i], t["after"][i], t["convnext"][i])]
        kept = statistics.median(t["before"][i] / t["after"][i] for i in rounds) if rounds else float("nan")
        p1 = statistics.median(t["convnext"][i] / t["after"][i] for i in rounds) if rounds else float("nan")
        cells = [", ".join("failed" if v is None else f"{v:.3f}" for v in t[k]) for k in ("before", "after", "convnext")]
        print(f"| {b} | {cells[0]} | {cells[1]} | {cells[2]} | {kept:.2f} | {p1:.2f} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"before": args.before, "batch": args.batch, "repeats": args.repeats, "s_per_batch": times},
                      f, indent=1)
    print(f"\nbatch {args.batch}, median of {args.repeats} timed batches per process, each model in a fresh "
          f"process, order reversed every other round; before = {args.before}")


if __name__ == "__main__":
    main()
