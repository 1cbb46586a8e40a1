"""Op-level timings behind keras_hiri.ops' implementations (docs/performance.md).

1. Depthwise 3x3: the backend's op against the unrolled tap sum (on JAX on
   CPU, XLA's grouped convolution is far slower than nine fused shifted
   slices; on TensorFlow (oneDNN) and PyTorch the native op is mostly faster).
2. Exact GELU: the erf form against ``keras.ops.gelu(approximate=False)``.
3. PyTorch only: a stride-2 3x3 convolution through ``keras.ops.conv`` on a
   channels-last tensor, through ``keras_hiri.ops.conv`` (torch's conv on the
   NCHW view of the same tensor), and raw ``torch.nn.functional.conv2d`` on
   the data in NCHW and in ``torch.channels_last`` memory format: the cost of
   Keras' layout copies.
4. The HR block's sum of its branches, ``x + upsample(low)``: the upsampled
   map materialised (``upsample_2x_to``) against one broadcast add over
   a 6-d view of ``x`` (``add_upsampled_2x``), eager and compiled.

Shapes are those of HIRI-ViT-S at 448 (batch 8).

    KERAS_BACKEND=jax python benchmarks/kernels.py
"""

import argparse

import keras
import numpy as np

from keras_hiri import profiling
from keras_hiri.layers.conv import depthwise_conv2d
from keras_hiri.layers.resample import add_upsampled_2x, upsample_2x_to

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
    return 1000 * profiling.time_calls(lambda: fn(x), warmup=2, repeats=repeats)[0]


def depthwise_table(rng, repeats):
    print(f"{'where':<34}{'input':>22}{'native ms':>11}{'unrolled ms':>13}{'speed-up':>10}")
    for shape, stride, where in SHAPES:
        x = keras.ops.convert_to_tensor(rng.normal(size=shape).astype("float32"))
        layer = depthwise_conv2d(3, stride)
        layer(x)
        if layer.implementation != "ops":
            print(f"{where:<34}{str(shape[1:]):>22}  (this backend's own convolution: no unrolled form)")
            continue
        times = {}
        for mode in ("native", "unrolled"):
            layer.unrolled = mode == "unrolled"  # the choice build() makes, set by hand
            times[mode] = median_ms(compiled(lambda x: layer(x)), x, repeats)
        print(
            f"{where:<34}{str(shape[1:]):>22}{times['native']:>11.2f}"
            f"{times['unrolled']:>13.2f}{times['native'] / times['unrolled']:>9.1f}x"
        )


def gelu_table(rng, repeats):
    from keras import ops

    x = ops.convert_to_tensor(rng.normal(size=(8, 224, 224, 32)).astype("float32"))
    erf_form = median_ms(compiled(lambda x: 0.5 * x * (1.0 + ops.erf(x * 0.7071067811865476))), x, repeats)
    fused = median_ms(compiled(lambda x: ops.gelu(x, approximate=False)), x, repeats)
    print(f"\nexact GELU on (224, 224, 32): erf form {erf_form:.2f} ms, "
          f"ops.gelu(approximate=False) {fused:.2f} ms")


def torch_layout_table(rng, repeats):
    import torch
    from keras import ops

    x = rng.normal(size=(8, 226, 226, 32)).astype("float32")  # padded 224 map
    w = rng.normal(size=(3, 3, 32, 32)).astype("float32")
    xk, wk = ops.convert_to_tensor(x), ops.convert_to_tensor(w)
    nchw = torch.from_numpy(x).permute(0, 3, 1, 2).contiguous()
    channels_last = nchw.contiguous(memory_format=torch.channels_last)
    wt = torch.from_numpy(w).permute(3, 2, 0, 1).contiguous()
    run = compiled
    from keras_hiri import ops as hiri_ops

    fast = median_ms(run(lambda x: hiri_ops.conv(x, wk, (2, 2), "valid", implementation="torch")), xk, repeats)
    rows = [
        ("keras.ops.conv, NHWC tensor", median_ms(run(lambda x: ops.conv(x, wk, 2, "valid")), xk, repeats)),
        ("keras_hiri.ops.conv 'torch', NHWC", fast),
        ("torch conv2d, NCHW contiguous", median_ms(
            run(lambda x: torch.nn.functional.conv2d(x, wt, stride=2)), nchw, repeats)),
        ("torch conv2d, channels_last", median_ms(
            run(lambda x: torch.nn.functional.conv2d(x, wt, stride=2)), channels_last, repeats)),
    ]
    print("\nstride-2 3x3 conv, 226x226x32 -> 112x112x32 (HR-stem hi_conv)")
    for name, ms in rows:
        print(f"  {name:<34}{ms:>8.2f} ms")


def eager(fn):
    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        return lambda x: jax.block_until_ready(fn(x))
    if backend == "torch":
        return compiled(fn)  # PyTorch is eager either way; no_grad as in inference
    return fn


def upsample_add_table(rng, repeats):
    from keras import ops

    print("\nHR block: x + upsample_2x(low), materialised against one broadcast add")
    print(f"  {'where':<24}{'x':>16}{'mode':>10}{'materialised ms':>17}{'broadcast ms':>14}{'speed-up':>10}")
    modes = [("eager", eager)] + ([("compiled", compiled)] if keras.backend.backend() != "torch" else [])
    for shape, where in [((8, 112, 112, 32), "stage-1 HR block"), ((8, 56, 56, 64), "stage-2 HR block")]:
        b, h, w, c = shape
        x = ops.convert_to_tensor(rng.normal(size=shape).astype("float32"))
        low = ops.convert_to_tensor(rng.normal(size=(b, h // 2, w // 2, c)).astype("float32"))
        for mode, wrap in modes:
            slow = median_ms(wrap(lambda x: ops.add(x, upsample_2x_to(low, x))), x, repeats)
            fast = median_ms(wrap(lambda x: add_upsampled_2x(x, low)), x, repeats)
            print(f"  {where:<24}{str(shape[1:]):>16}{mode:>10}{slow:>17.2f}{fast:>14.2f}{slow / fast:>9.2f}x")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args(argv)
    rng = np.random.default_rng(0)
    print(f"backend {keras.backend.backend()}")
    depthwise_table(rng, args.repeats)
    gelu_table(rng, args.repeats)
    upsample_add_table(rng, args.repeats)
    if keras.backend.backend() == "torch":
        torch_layout_table(rng, args.repeats)


if __name__ == "__main__":
    main()
