"""The paper's Table IX, counted: parameters and multiply-adds of PVTv2-B2 and
DaViT-Tiny, plain at 224 and HIRI-upgraded at 448, against the table.

Two counters per model (HRNet-W18, PVTv2-B2, DaViT-Tiny), in one PyTorch-backend process per model:
``keras_hiri.profile`` (the project's, from the layers) and PyTorch's own
``FlopCounterMode`` over one real forward pass with PyTorch's parameter list
(``keras_hiri.backbones.costs.torch_macs``). Where timm is installed
(``pip install --no-deps timm``; see ``timm_peers.py``), timm's ``pvt_v2_b2``
``davit_tiny`` and ``hrnet_w18`` (randomly initialised, no weights downloaded) are counted the
same way, as the independent reference for the plain networks, and their
weights are copied into ours (:func:`port_timm`) to compare the logits of one
random image: the same function, not only the same counts. ``--scan`` prints the front's numbers tried
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

TIMM_NAMES = {("pvt_v2", "b2"): "pvt_v2_b2", ("davit", "tiny"): "davit_tiny", ("hrnet", "w18"): "hrnet_w18"}
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
                "macs": torch_macs(model, (1, 3, 224, 224)), "max_abs_diff": logits_difference(model, key[:2])}
    upgrade = backbones.HiriUpgrade(*spec["upgrade"]) if spec.get("upgrade") else key[2]
    side = backbones.TABLE_IX[key][0]
    model = backbones.BUILDERS[key[0]](key[1], hiri=upgrade, input_shape=(side, side, 3))
    profile = keras_hiri.profile(model)
    torch_params = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return {**spec, "params": profile.params, "macs": profile.macs, "torch_params": torch_params,
            "torch_macs": torch_macs(model, (1, side, side, 3))}


# Our layer names (the part after "stageI_blockJ_") -> timm's module names, per network.
_BLOCK_ROLES = {
    "pvt_v2": {"norm1": "norm1", "attn_q": "attn.q", "attn_kv": "attn.kv", "attn_proj": "attn.proj",
               "sr": "attn.sr", "sr_norm": "attn.norm", "norm2": "norm2", "mlp_fc1": "mlp.fc1",
               "mlp_dw": "mlp.dwconv", "mlp_fc2": "mlp.fc2"},
    "davit": {"cpe1": "cpe1.proj", "norm1": "norm1", "attn_qkv": "attn.qkv", "attn_proj": "attn.proj",
              "cpe2": "cpe2.proj", "norm2": "norm2", "fc1": "mlp.fc1", "fc2": "mlp.fc2"},
}
_TOP = {"pvt_v2": {"stem_conv": "patch_embed.proj", "stem_norm": "patch_embed.norm", "predictions": "head",
                   "downsample_conv": "downsample.proj", "downsample_norm": "downsample.norm"},
        "davit": {"stem_conv": "stem.conv", "stem_norm": "stem.norm", "predictions": "head.fc",
                  "head_norm": "head.norm", "downsample_conv": "downsample.conv",
                  "downsample_norm": "downsample.norm"}}
_LEAF = {"kernel": "weight", "gamma": "weight", "beta": "bias", "bias": "bias", "moving_mean": "running_mean",
         "moving_variance": "running_var"}
# HRNet's layer names (keras_hiri.backbones.hrnet) -> timm's modules.
_HRNET = [
    (r"stem(\d)_(conv|bn)$", lambda m: f"{'conv' if m[2] == 'conv' else 'bn'}{m[1]}"),
    (r"stage1_block(\d+)_(conv\d|bn\d)$", lambda m: f"layer1.{int(m[1]) - 1}.{m[2]}"),
    (r"stage1_block(\d+)_short_(conv|bn)$", lambda m: f"layer1.{int(m[1]) - 1}.downsample.{m[2] == 'bn':d}"),
    (r"stage(\d)_transition(\d)_(conv|bn)$", lambda m: f"transition{int(m[1]) - 1}.{m[2]}." + (
        "" if int(m[2]) < int(m[1]) - 1 else "0.") + f"{m[3] == 'bn':d}"),
    (r"stage(\d)_module(\d+)_branch(\d)_block(\d+)_(conv\d|bn\d)$",
     lambda m: f"stage{m[1]}.{int(m[2]) - 1}.branches.{m[3]}.{int(m[4]) - 1}.{m[5]}"),
    (r"stage(\d)_module(\d+)_fuse(\d)_(\d)_(conv|bn)$",
     lambda m: f"stage{m[1]}.{int(m[2]) - 1}.fuse_layers.{m[3]}.{m[4]}.{m[5] == 'bn':d}"),
    (r"stage(\d)_module(\d+)_fuse(\d)_(\d)_(\d)_(conv|bn)$",
     lambda m: f"stage{m[1]}.{int(m[2]) - 1}.fuse_layers.{m[3]}.{m[4]}.{m[5]}.{m[6] == 'bn':d}"),
    (r"head_widen(\d)_(conv\d|bn\d)$", lambda m: f"incre_modules.{m[1]}.0.{m[2]}"),
    (r"head_widen(\d)_short_(conv|bn)$", lambda m: f"incre_modules.{m[1]}.0.downsample.{m[2] == 'bn':d}"),
    (r"head_merge(\d)_(conv|bn)$", lambda m: f"downsamp_modules.{int(m[1]) - 1}.{m[2] == 'bn':d}"),
    (r"head_final_(conv|bn)$", lambda m: f"final_layer.{m[1] == 'bn':d}"),
    (r"predictions$", lambda m: "classifier"),
]


def timm_key(network, path):
    """timm's state_dict key of one of our weights (its Keras path)."""
    import re

    *_, layer, leaf = path.split("/")
    if network == "hrnet":
        for pattern, module in _HRNET:
            match = re.match(pattern, layer)
            if match:
                return f"{module(match)}.{_LEAF[leaf]}"
        raise KeyError(path)
    block = re.match(r"stage(\d+)_block(\d+)_(.+)$", layer)
    if block:
        stage, index, role = int(block.group(1)) - 1, int(block.group(2)) - 1, block.group(3)
        where = f"{index // 2}.{index % 2}" if network == "davit" else str(index)
        module = f"stages.{stage}.blocks.{where}.{_BLOCK_ROLES[network][role]}"
    elif re.match(r"stage\d+_downsample_", layer):
        stage = int(layer[5:layer.index("_")]) - 1
        module = f"stages.{stage}.{_TOP[network][layer[layer.index('_') + 1:]]}"
    elif re.match(r"stage\d+_norm$", layer):
        module = f"stages.{int(layer[5:layer.index('_')]) - 1}.norm"
    else:
        module = _TOP[network][layer]
    return f"{module}.{_LEAF[leaf]}"


def port_timm(timm_model, model, network):
    """Copies a timm model's weights into our model of the same network:
    PyTorch's ``(out, in, kh, kw)`` convolution and ``(out, in)`` linear
    weights transposed to Keras' layouts."""
    state = {k: v.detach().cpu().numpy() for k, v in timm_model.state_dict().items()}
    used = set()
    for variable in model.weights:
        key = timm_key(network, variable.path)
        value = state[key]
        if value.ndim == 4:  # depthwise (C, 1, kh, kw) -> (kh, kw, C, 1); else (O, I, kh, kw) -> (kh, kw, I, O)
            value = value.transpose(2, 3, 0, 1) if variable.shape[-1] == 1 else value.transpose(2, 3, 1, 0)
        elif value.ndim == 2:
            value = value.T
        variable.assign(value)
        used.add(key)
    missing = {k for k in set(state) - used if not k.endswith("num_batches_tracked")}
    if missing:
        raise ValueError(f"timm weights not copied: {sorted(missing)[:5]}")


def logits_difference(timm_model, network_variant):
    """Max |logits(ours) - logits(timm)| / max |logits(timm)| on two random
    normalised images, with timm's weights copied into ours."""
    import numpy as np
    import torch

    from keras_hiri import backbones

    network, variant = network_variant
    model = backbones.BUILDERS[network](variant, include_preprocessing=False, classifier_activation=None)
    port_timm(timm_model, model, network)
    x = np.random.default_rng(0).normal(size=(2, 224, 224, 3)).astype("float32")
    with torch.no_grad():
        theirs = timm_model(torch.from_numpy(x.transpose(0, 3, 1, 2))).numpy()
    ours = np.asarray(model.predict_on_batch(x))
    # relative: with random weights and BatchNorm's initial statistics HRNet's activations grow to ~1e8
    return float(np.abs(ours - theirs).max() / np.abs(theirs).max())


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
        lines += ["", "| timm (no weights) | params | GMACs (FlopCounterMode) | ours equal | logits, timm's weights in "
                  "ours: max abs diff / max abs |", "|---|---:|---:|---|---:|"]
        for r in timm_rows:
            if "missing" in r:
                lines.append(f"| {TIMM_NAMES[(r['network'], r['variant'])]} | timm not installed | | | |")
                continue
            ours = next(o for o in results if (o["network"], o["variant"], o["hiri"]) == (r["network"], r["variant"],
                        False) and "timm" not in o and "upgrade" not in o)
            same = (ours["params"], ours["macs"]) == (r["params"], r["macs"])
            lines.append(f"| {TIMM_NAMES[(r['network'], r['variant'])]} | {r['params']:,} | {r['macs'] / 1e9:.4f} | "
                         f"{'yes' if same else '**no**'} | {r['max_abs_diff']:.1e} |")
    return "\n".join(lines)


def scan_table(results):
    lines = ["| C0 | HR blocks | HRNet-W18+HIRI params (M) | GMACs | PVTv2-B2+HIRI params (M) | GMACs "
             "| DaViT-T+HIRI params (M) | GMACs |", "|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for filters, depth in SCAN:
        row = {r["network"]: r for r in results if r.get("upgrade") == [filters, depth]}
        lines.append(f"| {filters} | {depth} | " + " | ".join(
            f"{row[n]['params'] / 1e6:.3f} | {row[n]['macs'] / 1e9:.3f}" for n in ("hrnet", "pvt_v2", "davit")) + " |")
    return "\n".join(lines + ["", "Table IX: HRNet-W18+HIRI 21.4 M / 4.6 G, PVTv2-B2+HIRI 25.5 M / 4.4 G, "
                               "DaViT-T+HIRI 28.5 M / 5.0 G"])


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
                 for f, d in SCAN for n, v in (("hrnet", "w18"), ("pvt_v2", "b2"), ("davit", "tiny"))]
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
