"""Table IX's claim at equal cost, on data available here: a plain network at
``S`` against its HIRI upgrade at ``2S``, trained the same way.

The task: which of four objects (cat, cup, rocket, face) is pasted on a real
photograph (``keras_hiri.training.data.pasted_objects``, one object per image,
small objects: 12-32 px in a 128-px image; validation backgrounds and faces
unseen in training). The upgraded network gets the 128-px images; the plain
one the same images averaged down 2x2 to 64 px, as a 224-px network sees a
photograph that a 448-px one sees at full resolution. The networks are a
small PVTv2 (widths 32-128) and the same with the HIRI front (HR stem and
stage of width 16, one HR block), so their multiply-adds are close.
Both train from scratch with the same optimizer (AdamW, cosine decay), batch,
steps and seed, each in a fresh process per backend. Printed: GMACs,
parameters, validation top-1, training wall time, and per backend the
differences.

    python benchmarks/table9_equal_cost.py                    # JAX and PyTorch
    python benchmarks/table9_equal_cost.py --backends tensorflow jax torch --epochs 20
"""

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from throughput import benchmark_main, benchmark_parser, run_worker  # noqa: E402

BACKENDS = ("tensorflow", "jax", "torch")
SIZE = 128
NETWORK = dict(widths=(32, 64, 96, 128), depths=(1, 1, 2, 1), heads=(1, 2, 3, 4), mlp_ratios=(4, 4, 4, 4),
               sr_ratios=(8, 4, 2, 1))
UPGRADE = dict(filters=16, depth=1)
MODELS = (("plain", SIZE // 2), ("hiri", SIZE))


def _task(split, n, side):
    from keras_hiri.training import data

    images, _, labels, names = data.pasted_objects(split, n=n, size=SIZE, objects=(1, 1), scale=(12, 32))
    images = images.astype("float32")
    if side != SIZE:  # 2x2 average: the same photographs at half the resolution
        images = images.reshape(n, side, 2, side, 2, 3).mean(axis=(2, 4))
    return images, labels[:, 0], names


def measure(spec):
    import keras

    import keras_hiri
    from keras_hiri import backbones

    keras.utils.set_random_seed(spec["seed"])
    side = spec["side"]
    x, y, names = _task("train", spec["train_images"], side)
    xv, yv, _ = _task("validation", spec["val_images"], side)
    hiri = backbones.HiriUpgrade(**UPGRADE) if spec["model"] == "hiri" else None
    model = backbones.PVTv2(NETWORK, hiri=hiri, input_shape=(side, side, 3), classes=len(names),
                            classifier_activation=None)
    steps = spec["epochs"] * (len(y) // spec["batch"])
    schedule = keras.optimizers.schedules.CosineDecay(spec["learning_rate"], steps)
    model.compile(optimizer=keras.optimizers.AdamW(schedule, weight_decay=0.05),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    start = time.perf_counter()
    model.fit(x, y, batch_size=spec["batch"], epochs=spec["epochs"], verbose=0, shuffle=True)
    wall = time.perf_counter() - start
    accuracy = model.evaluate(xv, yv, batch_size=spec["batch"], verbose=0, return_dict=True)["accuracy"]
    return {**spec, "backend": keras.backend.backend(), "val_top1": float(accuracy), "train_s": wall,
            "steps": steps, "params": model.count_params(), "gmacs": keras_hiri.profile(model).gmacs}


def run_backend(backend, args, progress):
    results = []
    for model, side in MODELS:
        spec = {"model": model, "side": side, "epochs": args.epochs, "batch": args.batch, "seed": 0,
                "train_images": args.train_images, "val_images": args.val_images,
                "learning_rate": args.learning_rate}
        results.append(run_worker(__file__, spec, backend, f"{model}@{side}"))
        progress.add(1)
    return results


def markdown(all_results, batch):
    lines = ["| backend | model | input | params (M) | GMACs | val top-1 | training s |",
             "|---|---|---|---:|---:|---:|---:|"]
    summary = ["", "| backend | top-1 HIRI@128 - plain@64 (points) | training time HIRI / plain |", "|---|---:|---:|"]
    first = None
    for backend, results in all_results.items():
        found = {r["model"]: r for r in results if "error" not in r}
        for model, side in MODELS:
            r = found.get(model)
            if r is None:
                lines.append(f"| {backend} | {model} | {side} | failed | | | |")
                continue
            first = first or r
            label = "small PVTv2 + HIRI" if model == "hiri" else "small PVTv2"
            lines.append(f"| {backend} | {label} | {side} | {r['params'] / 1e6:.2f} | {r['gmacs']:.3f} | "
                         f"{r['val_top1']:.3f} | {r['train_s']:.0f} |")
        if len(found) == 2:
            gap = 100 * (found["hiri"]["val_top1"] - found["plain"]["val_top1"])
            summary.append(f"| {backend} | {gap:+.1f} | {found['hiri']['train_s'] / found['plain']['train_s']:.2f} |")
    if first:
        lines += summary + ["", f"{first['train_images']} training / {first['val_images']} validation images, "
                            f"batch {batch}, {first['epochs']} epochs ({first['steps']} steps), AdamW "
                            f"{first['learning_rate']:g} with cosine decay, weight decay 0.05, seed {first['seed']}"]
    return "\n".join(lines)


def main(argv=None):
    parser = benchmark_parser(__doc__, BACKENDS, warmup=1, repeats=1)
    parser.set_defaults(backends=["jax", "torch"], batch=32)
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--train-images", type=int, default=768)
    parser.add_argument("--val-images", type=int, default=256)
    parser.add_argument("--learning-rate", type=float, default=2e-3)
    benchmark_main(parser, argv, measure, len(MODELS), run_backend, markdown,
                   positive=("batch", "epochs", "train_images", "val_images"))


if __name__ == "__main__":
    main()
