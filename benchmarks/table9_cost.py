"""The paper's Table IX, counted: parameters and multiply-adds of PVTv2-B2 and
DaViT-Tiny, plain at 224 and HIRI-upgraded at 448, against the table.

Two counters per model, in one PyTorch-backend process per model:
``keras_hiri.profile`` (the project's, from the layers) and PyTorch's own
``FlopCounterMode`` over one real forward pass with PyTorch's parameter list
(``keras_hiri.backbones.costs.torch_macs``). Where timm is installed
(``pip install --no-deps timm``; see ``timm_peers.py``), timm's ``pvt_v2_b2``
and ``davit_tiny`` (no weights) are counted the same way, as the independent
reference for the plain networks. ``--scan`` prints the front's numbers tried
(HR stem / stage width ``C0`` and HR blocks) with their cost for both networks.

    python benchmarks/table9_cost.py
    python benchmarks/table9_cost.py --scan
"""

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from throughput import run_worker  # noqa: E402

TIMM_NAMES = {("pvt_v2", "b2"): "pvt_v2_b2", ("davit", "tiny"): "davit_tiny"}
SCAN = [(filters, depth) for filters in (16, 24, 32) for depth in (1, 2, 3)]


def measure(spec):
    import keras_hiri
    from keras_hiri import backbones
    from keras_hiri.backbones.costs import torch_macs

    key = (spec["network"], spec["variant"], spec["hiri"])
    if spec.get("timm"):
        from timm_peers import _TorchvisionStandIn

        sys.meta_path.insert(0, _TorchvisionStandIn())
        try:
            import timm
        except ImportError:
            return {**spec, "missing": "timm"}
        model = timm.create_model(TIMM_NAMES[key[:2]], pretrained=False).eval()
        return {**spec, "params": sum(p.numel() for p in model.parameters()),
                "macs": torch_macs(model, (1, 3, 224, 224))}
    upgrade = backbones.HiriUpgrade(*spec["upgrade"]) if spec.get("upgrade") else key[2]
    side = backbones.TABLE_IX[key][0]
    model = backbones.BUILDERS[key[0]](key[1], hiri=upgrade, input_shape=(side, side, 3))
    profile = keras_hiri.profile(model)
    torch_params = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return {**spec, "params": profile.params, "macs": profile.macs, "torch_params": torch_params,
            "torch_macs": torch_macs(model, (1, side, side, 3))}


def _within(value, paper, tolerance):
    return "yes" if abs(value - paper) <= tolerance * paper else "**no**"


def table(results):
    from keras_hiri.backbones import GMACS_TOLERANCE, PARAMS_TOLERANCE, TABLE_IX

    lines = ["| network | input | params (M) | torch params (M) | Table IX | within 3 % | GMACs | torch GMACs "
             "| Table IX | within 10 % |", "|---|---|---:|---:|---:|---|---:|---:|---:|---|"]
    for r in results:
        if "timm" in r or "upgrade" in r:
            continue
        side, params_m, gflops = TABLE_IX[(r["network"], r["variant"], r["hiri"])]
        name = f"{r['network']} {r['variant']}" + (" + HIRI" if r["hiri"] else "")
        lines.append(
            f"| {name} | {side} | {r['params'] / 1e6:.3f} | {r['torch_params'] / 1e6:.3f} | {params_m} | "
            f"{_within(r['params'] / 1e6, params_m, PARAMS_TOLERANCE)} | {r['macs'] / 1e9:.3f} | "
            f"{r['torch_macs'] / 1e9:.3f} | {gflops} | {_within(r['macs'] / 1e9, gflops, GMACS_TOLERANCE)} |")
    timm_rows = [r for r in results if r.get("timm")]
    if timm_rows:
        lines += ["", "| timm (no weights) | params | GMACs (FlopCounterMode) | ours equal |", "|---|---:|---:|---|"]
        for r in timm_rows:
            if "missing" in r:
                lines.append(f"| {TIMM_NAMES[(r['network'], r['variant'])]} | timm not installed | | |")
                continue
            ours = next(o for o in results if (o["network"], o["variant"], o["hiri"]) == (r["network"], r["variant"],
                        False) and "timm" not in o and "upgrade" not in o)
            same = (ours["params"], ours["macs"]) == (r["params"], r["macs"])
            lines.append(f"| {TIMM_NAMES[(r['network'], r['variant'])]} | {r['params']:,} | {r['macs'] / 1e9:.4f} | "
                         f"{'yes' if same else '**no**'} |")
    return "\n".join(lines)


def scan_table(results):
    lines = ["| C0 | HR blocks | PVTv2-B2+HIRI params (M) | GMACs | DaViT-T+HIRI params (M) | GMACs |",
             "|---:|---:|---:|---:|---:|---:|"]
    for filters, depth in SCAN:
        row = {r["network"]: r for r in results if r.get("upgrade") == [filters, depth]}
        lines.append(f"| {filters} | {depth} | " + " | ".join(
            f"{row[n]['params'] / 1e6:.3f} | {row[n]['macs'] / 1e9:.3f}" for n in ("pvt_v2", "davit")) + " |")
    return "\n".join(lines + ["", "Table IX: PVTv2-B2+HIRI 25.5 M / 4.4 G, DaViT-T+HIRI 28.5 M / 5.0 G"])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--scan", action="store_true", help="the front's width and depth against cost")
    parser.add_argument("--json", help="also write the results to this JSON file")
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(measure(json.loads(args.worker))))
        return None
    from keras.utils import Progbar

    from keras_hiri.backbones import TABLE_IX

    if args.scan:
        specs = [{"network": n, "variant": v, "hiri": True, "upgrade": [f, d]}
                 for f, d in SCAN for n, v in (("pvt_v2", "b2"), ("davit", "tiny"))]
    else:
        specs = [{"network": n, "variant": v, "hiri": h} for n, v, h in TABLE_IX]
        specs += [{"network": n, "variant": v, "hiri": False, "timm": True} for n, v in TIMM_NAMES]
    progress = Progbar(len(specs), unit_name="model")
    results = []
    for spec in specs:
        results.append(run_worker(__file__, spec, "torch", json.dumps(spec)))
        progress.add(1)
    print((scan_table if args.scan else table)(results))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
    return results


if __name__ == "__main__":
    main()
