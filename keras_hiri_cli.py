"""The ``keras-hiri`` command: the verb table and the dispatcher.

This module sits beside the ``keras_hiri`` package, not inside it: importing
anything under ``keras_hiri`` runs the package's ``__init__``, which imports
Keras (and with it the backend) to register the layers, and that takes seconds.
Here only the standard library is imported, so ``keras-hiri --help`` and
``keras-hiri --version`` answer at once; a verb's module
(``keras_hiri/cli/<verb>.py``) is imported only when that verb runs.

    keras-hiri predict cat.jpg dog.png --variant tiny --weights tiny_skimage_patches_64
    keras-hiri profile --variant S --resolution 224 448 [--pin-late-grids]
    keras-hiri train --photo-patches --variant tiny --image-size 64 --output-dir runs/p
    keras-hiri export model.keras served/hiri --version 1
    keras-hiri convert model.pth --variant S --output hiri_vit_s.weights.h5
    keras-hiri detect --backbone hiri --variant S --json hiri.json

Bad input (a missing file, a file that is not an image, an unknown variant or
weights name) prints ``keras-hiri: error: ...`` and exits with status 2.

Process-wide settings (the allocator, XLA flags) are the caller's: see
docs/performance.md for the ones worth knowing.
"""

import argparse
import importlib
import os
import sys

VERBS = {
    "predict": "top-5 classes of images (ImageNet names for 1000 classes, or the checkpoint's)",
    "profile": "parameters and GMACs of a variant, counted from the built model",
    "train": "train with the paper's recipe (EMA distillation), resumable; --help for options",
    "export": "write a .keras model as a TF Serving SavedModel (OUTPUT/<version>/)",
    "convert": "convert a PyTorch state_dict (timm-style names) into .weights.h5, verified",
    "detect": "train RetinaNet on HIRI-ViT on an offline detection set, scored by COCOeval",
}


def _version():
    from importlib import metadata

    try:
        return metadata.version("keras-hiri")
    except metadata.PackageNotFoundError:  # a source tree on sys.path, not installed
        return "unknown (not installed)"


def main(argv=None):
    """Runs ``keras-hiri VERB ...``; returns the exit status (2 for bad input)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TF's C++ notices are noise here
    parser = argparse.ArgumentParser(
        prog="keras-hiri", description="HIRI-ViT for Keras 3 (TensorFlow, JAX, PyTorch).",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("\n\n", 2)[2],
    )
    parser.add_argument("--version", action="version", version=f"keras-hiri {_version()}")
    sub = parser.add_subparsers(dest="command", required=True)
    for verb, text in VERBS.items():
        sub.add_parser(verb, help=text, add_help=False)
    args, rest = parser.parse_known_args(argv)
    try:
        verb = importlib.import_module(f"keras_hiri.cli.{args.command}")
        return verb.main(rest) or 0
    except ValueError as e:
        print(f"keras-hiri: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
