"""``keras-hiri`` command line.

    keras-hiri profile --variant S --resolution 224 448 [--pin-late-grids]
"""

import argparse
import sys


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="keras-hiri", description="HIRI-ViT for Keras 3 (TensorFlow, JAX, PyTorch)."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser(
        "profile",
        help="print parameters and GMACs of a variant, counted from the built model",
        add_help=False,
    )
    args, rest = parser.parse_known_args(argv)
    if args.command == "profile":
        from keras_hiri.profiling import main as profile_main

        profile_main(rest)
    return 0


if __name__ == "__main__":
    sys.exit(main())
