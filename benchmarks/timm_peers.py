"""HIRI-ViT-S@448 on Keras' PyTorch backend against timm's ConvNeXt-T and PVTv2-B2 at 224 in plain PyTorch.

The yardstick a PyTorch user would pick instead: timm's ``convnext_tiny`` and
``pvt_v2_b2`` (random weights, ``eval()``, ``torch.inference_mode()``), called
directly, against HIRI-ViT-S@448 through Keras (``predict_on_batch``, as every
other benchmark here). Each model runs in a fresh process; batch 8; median of
``--repeats`` timed calls after ``--warmup``. Also HIRI-ViT-S@224 (plain
schedule) and timm's models at 448 for the resolution the paper argues about.

timm needs ``pip install --no-deps timm`` here: it imports torchvision when
imported, and the registry's torchvision wheels are CUDA builds that do not
load with the local CPU torch; the two timm models use nothing of torchvision,
so this script (only this script) gives timm a stand-in ``torchvision`` module.

Printed ratios: thr(HIRI-ViT-S@448) / thr(timm model@224).

    python benchmarks/timm_peers.py
    python benchmarks/timm_peers.py --repeats 10
"""

import importlib.abc
import importlib.util
import os
import statistics
import sys
import time
import types

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from throughput import benchmark_main, benchmark_parser, run_worker  # noqa: E402

ROWS = [("hiri_vit_s", 448), ("hiri_vit_s", 224), ("convnext_tiny", 224), ("pvt_v2_b2", 224),
        ("convnext_tiny", 448), ("pvt_v2_b2", 448)]
LABELS = {"hiri_vit_s": "HIRI-ViT-S (keras_hiri, Keras on PyTorch)", "convnext_tiny": "ConvNeXt-T (timm)",
          "pvt_v2_b2": "PVTv2-B2 (timm)"}


class _Anything(type):
    """Placeholder classes whose every attribute is another placeholder."""

    def __getattr__(cls, name):
        if name.startswith("__"):
            raise AttributeError(name)
        return _Anything(name, (), {})


class _StandIn(types.ModuleType):
    __path__ = []

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        value = _Anything(name, (), {})
        setattr(self, name, value)
        return value


class _TorchvisionStandIn(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Answers ``import torchvision[.anything]`` with stand-in modules (see the module docstring)."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname == "torchvision" or fullname.startswith("torchvision."):
            return importlib.util.spec_from_loader(fullname, self, is_package=True)
        return None

    def create_module(self, spec):
        return _StandIn(spec.name)

    def exec_module(self, module):
        pass


def _timm_forward(name, size, batch):
    sys.meta_path.insert(0, _TorchvisionStandIn())
    import timm
    import torch

    model = timm.create_model(name, pretrained=False).eval()
    x = torch.randn(batch, 3, size, size)

    def forward():
        with torch.inference_mode():
            return model(x)

    return forward, sum(p.numel() for p in model.parameters())


def _hiri_forward(size, batch):
    import numpy as np

    import keras_hiri

    model = keras_hiri.HiriViTS(input_shape=(size, size, 3))
    x = np.random.default_rng(0).uniform(0, 255, (batch, size, size, 3)).astype("float32")
    return (lambda: model.predict_on_batch(x)), model.count_params()


def measure(spec):
    name, size, batch = spec["model"], spec["resolution"], spec["batch"]
    if name == "hiri_vit_s":
        forward, params = _hiri_forward(size, batch)
    else:
        forward, params = _timm_forward(name, size, batch)
    for _ in range(spec["warmup"]):
        forward()
    times = []
    for _ in range(spec["repeats"]):
        start = time.perf_counter()
        forward()
        times.append(time.perf_counter() - start)
    median = statistics.median(times)
    return {**spec, "params": params, "median_s": median, "images_per_s": batch / median}


def run_backend(backend, args, progress):
    results = []
    for model, resolution in ROWS:
        spec = {"model": model, "resolution": resolution, "batch": args.batch, "warmup": args.warmup,
                "repeats": args.repeats}
        results.append(run_worker(__file__, spec, backend, f"{model}@{resolution}"))
        progress.add(1)
    return results


def markdown(all_results, batch):
    results = [r for r in all_results["torch"] if "error" not in r]
    lines = ["| model | input | params (M) | img/s | ms/batch |", "|---|---|---:|---:|---:|"]
    for model, resolution in ROWS:
        r = next((r for r in results if (r["model"], r["resolution"]) == (model, resolution)), None)
        lines.append(f"| {LABELS[model]} | {resolution} | " + ("failed | | |" if r is None else
                     f"{r['params'] / 1e6:.1f} | {r['images_per_s']:.2f} | {1000 * r['median_s']:.0f} |"))
    find = {(r["model"], r["resolution"]): r for r in results}
    hiri = find.get(("hiri_vit_s", 448))
    lines += ["", "| ratio | value |", "|---|---:|"]
    for peer in ("convnext_tiny", "pvt_v2_b2"):
        other = find.get((peer, 224))
        value = f"{hiri['images_per_s'] / other['images_per_s']:.2f}" if hiri and other else "-"
        lines.append(f"| thr(HIRI-ViT-S@448) / thr({LABELS[peer]}@224) | {value} |")
    first = results[0] if results else {"repeats": "-", "warmup": "-"}
    lines += ["", f"batch {batch}, median of {first['repeats']} timed calls after {first['warmup']} warm-up calls, "
                  "each model in a fresh process; timm eager under torch.inference_mode(), keras_hiri through "
                  "predict_on_batch"]
    return "\n".join(lines)


def main(argv=None):
    parser = benchmark_parser(__doc__, ("torch",), warmup=2, repeats=5)
    benchmark_main(parser, argv, measure, len(ROWS), run_backend, markdown)


if __name__ == "__main__":
    main()
