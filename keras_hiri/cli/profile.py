"""``keras-hiri profile``: parameters and GMACs of a variant, counted from the built model."""

import argparse

from keras_hiri.cli import VERBS
from keras_hiri.profiling import profile


def main(argv=None):
    from keras_hiri.builder import HiriViT

    parser = argparse.ArgumentParser(prog="keras-hiri profile", description=VERBS["profile"])
    parser.add_argument("--variant", default="S", help="S, B or L")
    parser.add_argument("--resolution", type=int, nargs="+", default=[448])
    parser.add_argument("--pin-late-grids", action="store_true")
    parser.add_argument("--classes", type=int, default=1000)
    args = parser.parse_args(argv)
    for resolution in args.resolution:
        model = HiriViT(
            args.variant, input_shape=(resolution, resolution, 3),
            pin_late_grids=args.pin_late_grids, classes=args.classes,
        )
        print(profile(model).table())
        print()
