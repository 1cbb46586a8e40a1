"""``keras-hiri export``: a .keras model as a TF Serving SavedModel (OUTPUT/<version>/)."""

import argparse
import os

from keras_hiri.cli import VERBS
from keras_hiri.io.serving import INPUTS, export


def main(argv=None):
    parser = argparse.ArgumentParser(prog="keras-hiri export", description=VERBS["export"])
    parser.add_argument("model", help="a .keras file")
    parser.add_argument("output", help="model base path; the SavedModel goes to OUTPUT/<version>")
    parser.add_argument("--version", type=int, default=1)
    parser.add_argument("--top-k", type=int, default=None,
                        help="classes to rank (default 5; none for a backbone)")
    parser.add_argument("--default-input", choices=INPUTS, default="images")
    args = parser.parse_args(argv)
    import keras

    import keras_hiri  # noqa: F401  (registers the layers for loading)

    if not os.path.isfile(args.model) or not args.model.endswith(".keras"):
        parser.error(f"model must be an existing .keras file: {args.model!r}")
    model = keras.saving.load_model(args.model)
    print(export(model, args.output, version=args.version, top_k=args.top_k,
                 default_input=args.default_input))


if __name__ == "__main__":
    main()
