"""``keras-hiri predict``: top-5 classes of images (ImageNet names for 1000 classes, or the checkpoint's)."""

import argparse
import os
import sys

from keras_hiri.cli import VERBS


def main(argv=None):
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

    from keras_hiri import extras

    tf = extras.require_tensorflow("keras-hiri predict (image decoding)")

    import keras_hiri
    from keras_hiri.io import weights as weights_lib
    from keras_hiri.training import augmentation

    entry = weights_lib.registry().get(args.weights, {}) if args.weights else {}
    size = args.image_size or entry.get("resolution", 448)
    classes = entry.get("classes", 1000)
    if args.weights and not entry:
        if os.path.isfile(args.weights):
            classes = weights_lib.checkpoint_metadata(args.weights)["classes"] or 1000
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
