"""Loads a SavedModel in a fresh TensorFlow process, as a model server would.

    python -m tests.serve_helper SAVED_MODEL_DIR INPUTS.npz OUTPUT.npz
"""

import sys

import numpy as np
import tensorflow as tf


def main(saved, inputs_path, output_path):
    loaded = tf.saved_model.load(saved)
    inputs = np.load(inputs_path)
    images = inputs["images"]
    out = {}
    for name in ("serve_images", "serving_default"):
        result = loaded.signatures[name](images=tf.constant(images))
        out.update({f"{name}/{k}": v.numpy() for k, v in result.items()})
    pngs = tf.stack([tf.io.encode_png(tf.constant(im.astype(np.uint8))) for im in images])
    result = loaded.signatures["serve_bytes"](image_bytes=pngs)
    out.update({f"serve_bytes/{k}": v.numpy() for k, v in result.items()})
    errors = []
    for bad in (images.astype(np.int32), images[..., :2], images[0]):
        try:
            loaded.signatures["serve_images"](images=tf.constant(bad))
        except (TypeError, ValueError, tf.errors.InvalidArgumentError) as e:
            errors.append(type(e).__name__)
    try:
        loaded.signatures["serve_bytes"](image_bytes=tf.constant([b"not an image"]))
    except tf.errors.InvalidArgumentError as e:
        errors.append(type(e).__name__)
    out["rejected"] = np.array(len(errors))
    out["signatures"] = np.array(sorted(loaded.signatures.keys()))
    np.savez(output_path, **out)


if __name__ == "__main__":
    main(*sys.argv[1:])
