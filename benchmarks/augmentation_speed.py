"""RandAugment's cost: Keras core's layer against keras_hiri's (Keras' with a
per-image, traceable histogram equalization; see keras_hiri/training/randaugment.py).

Side by side in one run, per backend, each layer in a fresh process, on batches
of ``--batch`` random ``--size``² images with the recipe's settings (2 ops,
factor 0.5):

* ``tf.data build``: seconds to trace ``dataset.map(RandAugment)`` (what every
  ``keras_hiri.training.augmentation.train_pipeline`` pays once);
* ``tf.data batch``: median seconds per batch through that map;
* ``eager batch``: median seconds per batch of the layer run eagerly on the
  Keras backend (what ``keras_hiri.KeyedImageDataset`` runs);
* ``eager per image``: the same batch with the layer applied to one image at a
  time, the price of choosing RandAugment's operations per image (timm) rather
  than per batch (Keras).

    python benchmarks/augmentation_speed.py
    python benchmarks/augmentation_speed.py --backends jax --size 224 --repeats 5
"""

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from throughput import benchmark_main, benchmark_parser, run_worker  # noqa: E402  (shared by the benchmarks)

BACKENDS = ("tensorflow", "jax", "torch")
LAYERS = ("keras", "keras_hiri")


def _layer(name):
    import keras

    from keras_hiri.training.randaugment import recipe_randaugment
    from keras_hiri.training.recipe import DEFAULTS

    if name == "keras_hiri":
        return recipe_randaugment(seed=0)
    return keras.layers.RandAugment(value_range=(0, 255), num_ops=DEFAULTS["randaugment_ops"],
                                    factor=DEFAULTS["randaugment_factor"], seed=0)


def measure(spec):
    import keras
    import numpy as np
    import tensorflow as tf

    from keras_hiri import profiling

    batch, size = spec["batch"], spec["size"]
    images = np.random.default_rng(0).integers(0, 256, (batch, size, size, 3)).astype("float32")
    layer = _layer(spec["layer"])

    start = time.perf_counter()
    dataset = tf.data.Dataset.from_tensors(images).repeat().map(lambda x: layer(x, training=True))
    build_s = time.perf_counter() - start
    batches = iter(dataset)
    tf_data_s = profiling.time_calls(lambda: next(batches).numpy(), spec["warmup"], spec["repeats"])[0]

    eager_layer = _layer(spec["layer"])
    x = keras.ops.convert_to_tensor(images)

    def augment(images):
        transformation = eager_layer.get_random_transformation(images, training=True)
        keras.ops.convert_to_numpy(eager_layer.transform_images(images, transformation, training=True))

    eager_s = profiling.time_calls(lambda: augment(x), spec["warmup"], spec["repeats"])[0]
    per_image_s = profiling.time_calls(lambda: [augment(x[i:i + 1]) for i in range(batch)],
                                       spec["warmup"], spec["repeats"])[0]
    return {**spec, "backend": keras.backend.backend(), "build_s": build_s, "tf_data_s": tf_data_s,
            "eager_s": eager_s, "eager_per_image_s": per_image_s}


def run_backend(backend, args, progress):
    results = []
    for layer in LAYERS:
        spec = {"layer": layer, "batch": args.batch, "size": args.size, "warmup": args.warmup,
                "repeats": args.repeats}
        results.append(run_worker(__file__, spec, backend, f"RandAugment ({layer})"))
        progress.add(1)
    return results


def markdown(all_results, batch):
    lines = ["| backend | RandAugment | tf.data build (s) | tf.data batch (s) | eager batch (s) | "
             "eager per image (s) | per image / batch |",
             "|---|---|---|---|---|---|---|"]
    ratios = []
    for backend, results in all_results.items():
        ok = {r["layer"]: r for r in results if "error" not in r}
        for r in results:
            if "error" in r:
                lines.append(f"| {backend} | {r['layer']} | failed | | | | |")
                continue
            lines.append(f"| {backend} | {r['layer']} | {r['build_s']:.2f} | {r['tf_data_s']:.3f} | "
                         f"{r['eager_s']:.3f} | {r['eager_per_image_s']:.3f} | "
                         f"{r['eager_per_image_s'] / r['eager_s']:.2f}x |")
        if len(ok) == 2:
            k, h = ok["keras"], ok["keras_hiri"]
            ratios.append(f"{backend}: build {k['build_s'] / h['build_s']:.2f}x, tf.data batch "
                          f"{k['tf_data_s'] / h['tf_data_s']:.2f}x, eager batch {k['eager_s'] / h['eager_s']:.2f}x")
    first = next(r for rs in all_results.values() for r in rs)
    lines += ["", "keras / keras_hiri (above 1: keras_hiri faster):"] + [f"  {r}" for r in ratios]
    lines += ["", f"batch {batch} of {first['size']}x{first['size']} images, 2 ops at factor 0.5, median of "
                  f"{first['repeats']} batches after {first['warmup']} warm-up, one process per layer"]
    return "\n".join(lines)


def main(argv=None):
    parser = benchmark_parser(__doc__, BACKENDS, warmup=1, repeats=5)
    parser.add_argument("--size", type=int, default=224)
    benchmark_main(parser, argv, measure, len(LAYERS), run_backend, markdown,
                   positive=("batch", "size", "warmup", "repeats"))


if __name__ == "__main__":
    main()
