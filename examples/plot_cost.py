"""The paper's Figure 1 for this implementation: cost against input resolution.

Left: GMACs per image (counted by ``keras_hiri.profile`` from the built models,
the same counter for HIRI-ViT and the ``keras.applications`` peers). Right:
measured inference latency per image on this machine and backend (batch
``--batch``, median of ``--repeats`` timed batches after warm-up, Keras'
default compile mode). HIRI-ViT uses the plain stride schedule (the library
default) and, dashed, the paper's pinned late grids.

    python examples/plot_cost.py                      # writes docs/figure1_cost.png
    KERAS_BACKEND=jax python examples/plot_cost.py --out cost_jax.png
"""

import argparse
import os

import keras
import numpy as np

import keras_hiri

MODELS = {
    "HIRI-ViT-S": lambda r, pin: keras_hiri.HiriViT("S", input_shape=(r, r, 3), pin_late_grids=pin),
    "HIRI-ViT-B": lambda r, pin: keras_hiri.HiriViT("B", input_shape=(r, r, 3), pin_late_grids=pin),
    "ConvNeXtTiny": lambda r, _: keras.applications.ConvNeXtTiny(weights=None, input_shape=(r, r, 3)),
    "ConvNeXtSmall": lambda r, _: keras.applications.ConvNeXtSmall(weights=None, input_shape=(r, r, 3)),
    "EfficientNetV2S": lambda r, _: keras.applications.EfficientNetV2S(
        weights=None, input_shape=(r, r, 3)
    ),
}


def latency_ms(model, resolution, batch, repeats):
    x = np.random.default_rng(0).uniform(0, 255, (batch, resolution, resolution, 3)).astype("float32")
    median, _ = keras_hiri.profiling.latency(model, x, warmup=2, repeats=repeats)
    return 1000 * median / batch


def measure(resolutions, batch, repeats):
    """``{(name, pinned): [(resolution, gmacs, ms_per_image)]}``."""
    jobs = [(name, False, r) for name in MODELS for r in resolutions]
    jobs += [(name, True, r) for name in ("HIRI-ViT-S", "HIRI-ViT-B") for r in resolutions if r < 448]
    bar = keras.utils.Progbar(len(jobs), unit_name="model")
    curves = {}
    for name, pinned, r in jobs:
        model = MODELS[name](r, pinned)
        gmacs = keras_hiri.profile(model).gmacs
        ms = latency_ms(model, r, batch, repeats)
        curves.setdefault((name, pinned), []).append((r, gmacs, ms))
        keras.backend.clear_session()
        bar.add(1)
    # The pinned curves join the plain ones at 448 and above (same network there).
    for name in ("HIRI-ViT-S", "HIRI-ViT-B"):
        if (name, True) in curves:
            curves[(name, True)] += [p for p in curves[(name, False)] if p[0] >= 448]
    return curves


def plot(curves, out, batch):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colours = dict(zip(MODELS, ["tab:red", "tab:purple", "tab:blue", "tab:cyan", "tab:green"]))
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.8))
    for (name, pinned), points in sorted(curves.items(), key=lambda kv: kv[0][1]):
        r, g, ms = zip(*sorted(points))
        style = dict(color=colours[name], marker="o", linestyle="--" if pinned else "-")
        label = f"{name} (pinned late grids)" if pinned else name
        left.plot(r, g, label=label, **style)
        right.plot(r, ms, label=label, **style)
    left.set(xlabel="input resolution (pixels per side)", ylabel="GMACs per image",
             title="Compute vs resolution")
    right.set(xlabel="input resolution (pixels per side)", ylabel="ms per image",
              title=f"Measured latency ({keras.backend.backend()}, CPU, batch {batch})")
    for ax in (left, right):
        ax.grid(alpha=0.3)
    left.legend(fontsize=8)
    fig.suptitle("HIRI-ViT (keras_hiri, random weights) vs keras.applications peers")
    fig.tight_layout()
    os.makedirs(os.path.dirname(out) or ".", exist_ok=True)
    fig.savefig(out, dpi=110)
    print(f"wrote {out}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--resolutions", type=int, nargs="+", default=[224, 320, 384, 448, 512])
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default=os.path.join("docs", "figure1_cost.png"))
    args = parser.parse_args(argv)
    if min(args.resolutions) < 64:
        parser.error("every resolution must be >= 64 (HIRI-ViT's total stride)")
    curves = measure(args.resolutions, args.batch, args.repeats)
    print(f"{'model':<36}{'res':>6}{'GMACs':>9}{'ms/img':>9}")
    for (name, pinned), points in curves.items():
        for r, g, ms in sorted(points):
            print(f"{name + (' pinned' if pinned else ''):<36}{r:>6}{g:>9.2f}{ms:>9.1f}")
    plot(curves, args.out, args.batch)


if __name__ == "__main__":
    main()
