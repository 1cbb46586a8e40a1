"""``keras-hiri`` command line.

    keras-hiri predict cat.jpg dog.png --variant tiny --weights tiny_skimage_patches_64
    keras-hiri profile --variant S --resolution 224 448 [--pin-late-grids]
    keras-hiri train --photo-patches --variant tiny --image-size 64 --output-dir runs/p
    keras-hiri export model.keras served/hiri --version 1
    keras-hiri convert model.pth --variant S --output hiri_vit_s.weights.h5

Bad input (a missing file, a file that is not an image, an unknown variant or
weights name) prints ``keras-hiri: error: ...`` and exits with status 2.
"""

import argparse
import os
import sys

VERBS = {
    "predict": "top-5 classes of images (ImageNet names for 1000 classes, or the checkpoint's)",
    "profile": "parameters and GMACs of a variant, counted from the built model",
    "train": "train with the paper's recipe (EMA distillation), resumable; --help for options",
    "export": "write a .keras model as a TF Serving SavedModel (OUTPUT/<version>/)",
    "convert": "convert a PyTorch state_dict (timm-style names) into .weights.h5, verified",
}


def _predict(argv):
    parser = argparse.ArgumentParser(prog="keras-hiri predict", description=VERBS["predict"])
    parser.add_argument("images", nargs="+", help="image files (JPEG, PNG, BMP, GIF)")
    parser.add_argument("--variant", default="S")
    parser.add_argument("--weights", default=None, help="registry name or checkpoint path")
    parser.add_argument("--image-size", type=int, default=None,
                        help="input side (default: the checkpoint's, else 448)")
    parser.add_argument("--top", type=int, default=5)
    args = parser.parse_args(argv)
    for path in args.images:
        if not os.path.isfile(path):
            raise ValueError(f"image file not found: {path!r}")

    import numpy as np
    import tensorflow as tf

    import keras_hiri
    from keras_hiri import augmentation, weights as weights_lib

    entry = weights_lib.registry().get(args.weights, {}) if args.weights else {}
    size = args.image_size or entry.get("resolution", 448)
    classes = entry.get("classes", 1000)
    if args.weights and not entry:
        classes = weights_lib.checkpoint_num_classes(args.weights) if os.path.isfile(args.weights) else 1000
    batch = []
    for path in args.images:
        try:
            raw = tf.io.read_file(path)
            image = tf.io.decode_image(raw, channels=3, expand_animations=False)
        except (tf.errors.InvalidArgumentError, tf.errors.NotFoundError):
            raise ValueError(f"not a readable image (JPEG/PNG/BMP/GIF): {path!r}") from None
        batch.append(augmentation.eval_transform(image, (size, size)).numpy())
    model = keras_hiri.HiriViT(args.variant, input_shape=(size, size, 3), classes=classes,
                               weights=args.weights)
    if not args.weights:
        print("note: weights=None, a randomly initialised model (no ImageNet checkpoint exists); "
              "the classes below mean nothing.", file=sys.stderr)
    probs = np.asarray(model.predict(np.stack(batch), verbose=0))
    names = entry.get("class_names")
    for path, row in zip(args.images, probs):
        print(path)
        if names is None and probs.shape[1] == 1000:
            top = keras_hiri.decode_predictions(row[None], top=args.top)[0]
            lines = [(name, score) for _, name, score in top]
        else:
            order = np.argsort(row)[::-1][: args.top]
            lines = [(names[i] if names else f"class_{i}", float(row[i])) for i in order]
        for name, score in lines:
            print(f"  {score:7.4f}  {name}")


def _export(argv):
    from keras_hiri.export import main as export_main

    export_main(argv)


def main(argv=None):
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TF's C++ notices are noise here
    parser = argparse.ArgumentParser(
        prog="keras-hiri", description="HIRI-ViT for Keras 3 (TensorFlow, JAX, PyTorch).",
        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__,
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for verb, text in VERBS.items():
        sub.add_parser(verb, help=text, add_help=False)
    args, rest = parser.parse_known_args(argv)
    try:
        if args.command == "predict":
            _predict(rest)
        elif args.command == "profile":
            from keras_hiri.profiling import main as profile_main

            profile_main(rest)
        elif args.command == "train":
            from keras_hiri.training import main as train_main

            train_main(rest)
        elif args.command == "export":
            _export(rest)
        elif args.command == "convert":
            from keras_hiri.conversion import main as convert_main

            return convert_main(rest)
    except ValueError as e:
        print(f"keras-hiri: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
