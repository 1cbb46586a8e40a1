"""Upgrade a backbone to twice its input resolution with the HIRI kit.

A small four-stage backbone of your own (here: a patchify stem and ConvNeXt-like
stages in plain Keras) is built twice: as designed, at ``S``, and upgraded, at
``2S``: its stride-4 stem replaced by ``keras_hiri.backbones.hiri_front`` (HR
stem -> HR blocks -> IRDS-a), everything after it untouched. The script prints
both models' parameters and multiply-adds (``keras_hiri.profile``), checks that
the stages see the same grids, and trains each for one step. Then it counts
Table IX's PVTv2-B2 the same way (``--table-ix``).

    python examples/upgrade_backbone.py                 # S = 64
    python examples/upgrade_backbone.py --size 224 --table-ix
"""

import argparse

import keras
import numpy as np

import keras_hiri
from keras_hiri import backbones

WIDTHS = (32, 64, 128, 256)


def stage(x, width, name):
    """A ConvNeXt-like block: depthwise 7x7, LayerNorm, MLP, residual."""
    y = keras.layers.DepthwiseConv2D(7, padding="same", name=f"{name}_dw")(x)
    y = keras.layers.LayerNormalization(epsilon=1e-6, name=f"{name}_norm")(y)
    y = keras.layers.Dense(4 * width, activation="gelu", name=f"{name}_fc1")(y)
    return keras.layers.Add(name=f"{name}_add")([x, keras.layers.Dense(width, name=f"{name}_fc2")(y)])


def my_backbone(size, upgrade=None, classes=10):
    """The user's backbone. ``upgrade``: a ``keras_hiri.backbones.HiriUpgrade``
    (the input is then ``2 * size``), or ``None`` for the backbone as designed."""
    side = 2 * size if upgrade else size
    inputs = keras.Input((side, side, 3))
    x = keras.layers.Rescaling(1 / 127.5, offset=-1)(inputs)
    if upgrade is None:
        x = keras.layers.Conv2D(WIDTHS[0], 4, strides=4, name="patchify")(x)  # the stride-4 stem
    else:
        _, x = backbones.hiri_front(x, WIDTHS[0], upgrade)  # the only change
    for i, width in enumerate(WIDTHS):
        if i:
            x = keras.layers.Conv2D(width, 2, strides=2, name=f"down{i}")(x)
        x = stage(x, width, f"stage{i + 1}")
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(classes, name="predictions")(x),
                       name="upgraded" if upgrade else "plain")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=64, help="the plain backbone's input side S")
    parser.add_argument("--table-ix", action="store_true", help="also count PVTv2-B2 plain@224 / +HIRI@448")
    args = parser.parse_args(argv)
    plain = my_backbone(args.size)
    upgraded = my_backbone(args.size, backbones.HiriUpgrade(filters=16, depth=2))
    rows = []
    for model in (plain, upgraded):
        profile = keras_hiri.profile(model)
        side = model.inputs[0].shape[1]
        grid = model.get_layer("stage1_add").output.shape[1]
        rows.append((model.name, side, profile.params / 1e6, profile.gmacs, grid))
        print(f"{model.name:>9} @{side}: {profile.params / 1e6:.3f} M parameters, {profile.gmacs:.3f} GMACs, "
              f"stage-1 grid {grid}x{grid}")
    assert rows[0][4] == rows[1][4], "the stages must run on the same grids"
    print(f"upgrade: input x2, parameters x{rows[1][2] / rows[0][2]:.3f}, multiply-adds x{rows[1][3] / rows[0][3]:.2f}")
    for model in (plain, upgraded):  # both train as any Keras model
        side = model.inputs[0].shape[1]
        x = np.random.default_rng(0).uniform(0, 255, (4, side, side, 3)).astype("float32")
        model.compile(optimizer="adamw", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        loss = model.train_on_batch(x, np.arange(4) % 10)
        print(f"{model.name}: one training step, loss {float(np.ravel(loss)[0]):.3f}")
    if args.table_ix:
        for hiri in (False, True):
            model = backbones.table_ix_model("pvt_v2", "b2", hiri)
            profile = keras_hiri.profile(model)
            print(f"{model.name} @{model.inputs[0].shape[1]}: {profile.params / 1e6:.2f} M, {profile.gmacs:.2f} GMACs "
                  f"(Table IX: {backbones.TABLE_IX[('pvt_v2', 'b2', hiri)][1:]})")
    return rows


if __name__ == "__main__":
    main()
