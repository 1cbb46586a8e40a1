"""``keras-hiri`` command line.

    keras-hiri profile --variant S --resolution 224 448 [--pin-late-grids]
    keras-hiri train --photo-patches --variant tiny --image-size 64 --epochs 10 \
        --batch-size 32 --output-dir runs/patches
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
    sub.add_parser(
        "train",
        help="train with the paper's recipe (EMA distillation), resumable; --help for options",
        add_help=False,
    )
    args, rest = parser.parse_known_args(argv)
    if args.command == "profile":
        from keras_hiri.profiling import main as profile_main

        profile_main(rest)
    elif args.command == "train":
        from keras_hiri.training import main as train_main

        train_main(rest)
    return 0


if __name__ == "__main__":
    sys.exit(main())
