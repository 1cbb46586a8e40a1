"""Fine-tuning the registry checkpoint on a second task: LoRA against full fine-tuning.

The checkpoint ``tiny_skimage_patches_64`` (trained to tell 10 photographs
apart) is fine-tuned, through keras-hub's ``HiriViTImageClassifier`` with a new
4-class head, on a different offline task: which object (cat, cup, rocket or
face) is pasted on a photograph background (``keras_hiri.training.data.pasted_objects``
with one object per image; validation backgrounds and faces unseen). Two modes,
the same data, steps, optimizer (AdamW; LoRA at its own learning rate, as
LoRA recipes run higher rates than full fine-tuning) and seed, each in a
fresh process per backend:

* ``full``: every weight trains;
* ``lora``: ``classifier.enable_lora(rank)``: LoRA factors on the attention's
  query and key-value projections (``backbone.enable_lora``, keras-hub's
  default for this backbone, and the class-attention head's) and the new
  classifier train; everything else is frozen.

Printed: trainable share, validation top-1, median step time, and per backend
the accuracy gap and the step-time ratio (goal: LoRA within 3 points of full
fine-tuning at < 5 % trainable).

    python benchmarks/lora_finetune.py                       # every backend
    python benchmarks/lora_finetune.py --backends torch --epochs 5
"""

import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from throughput import benchmark_main, benchmark_parser, run_worker  # noqa: E402

BACKENDS = ("tensorflow", "jax", "torch")
MODES = ("full", "lora")
PRESET = "tiny_skimage_patches_64"


def measure(spec):
    import keras
    import numpy as np

    from keras_hiri.tasks import hub
    from keras_hiri.training import data

    keras.utils.set_random_seed(0)
    size = spec["size"]
    x, _, labels, names = data.pasted_objects("train", n=spec["train_images"], size=size, objects=(1, 1),
                                              scale=(24, 48))
    xv, _, labels_v, _ = data.pasted_objects("validation", n=spec["val_images"], size=size, objects=(1, 1),
                                             scale=(24, 48))
    y, yv = labels[:, 0], labels_v[:, 0]
    # The checkpoint's backbone and class-attention head, a new 4-class classifier.
    classifier = hub.HiriViTImageClassifier.from_preset(PRESET, num_classes=len(names))
    if spec["mode"] == "lora":
        classifier.enable_lora(spec["rank"])
    rate = spec["lora_learning_rate"] if spec["mode"] == "lora" else spec["learning_rate"]
    classifier.compile(optimizer=keras.optimizers.AdamW(rate, weight_decay=0.05),
                       loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                       metrics=["accuracy"])
    times = []

    class StepTimer(keras.callbacks.Callback):
        def on_train_batch_begin(self, batch, logs=None):
            self.start = time.perf_counter()

        def on_train_batch_end(self, batch, logs=None):
            times.append(time.perf_counter() - self.start)

    classifier.fit(x, y, batch_size=spec["batch"], epochs=spec["epochs"], verbose=0, callbacks=[StepTimer()])
    steps_per_epoch = len(y) // spec["batch"] + bool(len(y) % spec["batch"])
    accuracy = classifier.evaluate(xv, yv, batch_size=spec["batch"], verbose=0, return_dict=True)["accuracy"]
    trainable = sum(int(np.prod(w.shape)) for w in classifier.trainable_weights)
    return {**spec, "backend": keras.backend.backend(), "val_top1": float(accuracy),
            "trainable": trainable, "params": int(classifier.count_params()),
            "step_s": statistics.median(times[steps_per_epoch:] or times), "steps": len(times)}


def run_backend(backend, args, progress):
    results = []
    for mode in MODES:
        spec = {"mode": mode, "rank": args.rank, "epochs": args.epochs, "batch": args.batch, "size": 64,
                "train_images": args.train_images, "val_images": args.val_images,
                "learning_rate": args.learning_rate, "lora_learning_rate": args.lora_learning_rate}
        results.append(run_worker(__file__, spec, backend, f"{mode} fine-tuning"))
        progress.add(1)
    return results


def markdown(all_results, batch):
    lines = ["| backend | mode | trainable | share | val top-1 | step s | steps |", "|---|---|---:|---:|---:|---:|---:|"]
    summary = ["", "| backend | top-1 LoRA - full (points) | step time LoRA / full |", "|---|---:|---:|"]
    first = None
    for backend, results in all_results.items():
        found = {r["mode"]: r for r in results if "error" not in r}
        for mode in MODES:
            r = found.get(mode)
            if r is None:
                lines.append(f"| {backend} | {mode} | failed | | | | |")
                continue
            first = first or r
            lines.append(f"| {backend} | {mode} | {r['trainable']:,} | {100 * r['trainable'] / r['params']:.2f} % "
                         f"| {r['val_top1']:.3f} | {r['step_s']:.3f} | {r['steps']} |")
        if len(found) == 2:
            gap = 100 * (found["lora"]["val_top1"] - found["full"]["val_top1"])
            summary.append(f"| {backend} | {gap:+.1f} | {found['lora']['step_s'] / found['full']['step_s']:.2f} |")
    if first:
        lines += summary + ["", f"{first['train_images']} training / {first['val_images']} validation images of "
                            f"{first['size']}², batch {batch}, {first['epochs']} epochs, AdamW at "
                            f"{first['learning_rate']:g} (full) / {first['lora_learning_rate']:g} (LoRA), weight "
                            f"decay 0.05, LoRA rank {first['rank']}, "
                            f"from `{PRESET}` (backbone and class-attention head) with a new 4-class classifier; step time: median after the first epoch"]
    return "\n".join(lines)


def main(argv=None):
    parser = benchmark_parser(__doc__, BACKENDS, warmup=0, repeats=0)
    parser.set_defaults(batch=32)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--rank", type=int, default=8)
    parser.add_argument("--learning-rate", type=float, default=1e-3, help="full fine-tuning's")
    parser.add_argument("--lora-learning-rate", type=float, default=5e-3, help="LoRA's")
    parser.add_argument("--train-images", type=int, default=512)
    parser.add_argument("--val-images", type=int, default=192)
    benchmark_main(parser, argv, measure, len(MODES), run_backend, markdown,
                   positive=("batch", "epochs", "rank", "train_images", "val_images"))


if __name__ == "__main__":
    main()
