"""Depthwise 3x3 convolution: the backend's op against the unrolled tap sum.

Evidence for ``keras_hiri.set_depthwise_implementation("auto")``: on JAX on
CPU, XLA's grouped convolution is far slower than nine fused shifted slices;
on TensorFlow (oneDNN) and PyTorch the native op is mostly the faster one.
Shapes are the depthwise convs of HIRI-ViT-S at 448 (batch 8).

    KERAS_BACKEND=jax python benchmarks/depthwise.py
"""

import argparse
import statistics
import time

import keras
import numpy as np

from keras_hiri import common

# (input shape, stride, where it occurs in HIRI-ViT-S @ 448)
SHAPES = [
    ((8, 224, 224, 32), 1, "HR-stem hi_dw"),
    ((8, 112, 112, 32), 1, "stage-1 HR block hi_dw"),
    ((8, 114, 114, 32), 2, "stage-1 HR block lo_dw (padded)"),
    ((8, 56, 56, 64), 1, "stage-2 HR block hi_dw"),
    ((8, 28, 28, 768), 1, "stage-3 CFFN dw"),
    ((8, 14, 14, 1600), 1, "stage-4 CFFN dw"),
]


def compiled(fn):
    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        f = jax.jit(fn)
        return lambda x: jax.block_until_ready(f(x))
    if backend == "tensorflow":
        import tensorflow as tf

        f = tf.function(fn)
        return lambda x: f(x).numpy()
    import torch

    def run(x):
        with torch.no_grad():
            return fn(x)

    return run


def median_ms(fn, x, repeats):
    fn(x)
    fn(x)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn(x)
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args(argv)
    rng = np.random.default_rng(0)
    print(f"backend {keras.backend.backend()}")
    print(f"{'where':<34}{'input':>22}{'native ms':>11}{'unrolled ms':>13}{'speed-up':>10}")
    previous = common.get_depthwise_implementation()
    try:
        for shape, stride, where in SHAPES:
            x = keras.ops.convert_to_tensor(rng.normal(size=shape).astype("float32"))
            layer = common.depthwise_conv2d(3, stride)
            layer(x)
            times = {}
            for mode in ("native", "unrolled"):
                common.set_depthwise_implementation(mode)
                times[mode] = median_ms(compiled(lambda x: layer(x)), x, args.repeats)
            print(
                f"{where:<34}{str(shape[1:]):>22}{times['native']:>11.2f}"
                f"{times['unrolled']:>13.2f}{times['native'] / times['unrolled']:>9.1f}x"
            )
    finally:
        common.set_depthwise_implementation(previous)


if __name__ == "__main__":
    main()
