"""Short demo: build HIRI-ViT-S at 448x448, classify a real photo, profile it.

    python examples/demo.py [--variant S] [--resolution 448]

The photo is scikit-image's "chelsea" (a tabby cat), which ships offline.
No ImageNet checkpoint of HIRI-ViT exists anywhere, so the model is randomly
initialised and its top-5 are NOT predictions of a trained network: the demo
shows the full inference path (preprocessing, forward pass, decoding) and the
model's real cost.
"""

import argparse
import os
import time

# TensorFlow's C++ warnings (oneDNN notices, grappler fusion notes) are noise here.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
from skimage import data  # noqa: E402

import keras_hiri  # noqa: E402


def load_photo(size):
    """Resize the shorter side to ``size`` and center-crop (the eval transform)."""
    image = data.chelsea()  # (300, 451, 3) uint8
    h, w = image.shape[:2]
    scale = size / min(h, w)
    resized = keras.ops.image.resize(
        image[None].astype("float32"), (round(h * scale), round(w * scale)), antialias=True
    )
    resized = keras.ops.convert_to_numpy(resized)[0]
    top = (resized.shape[0] - size) // 2
    left = (resized.shape[1] - size) // 2
    return np.clip(resized[top : top + size, left : left + size], 0, 255)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--variant", default="S")
    parser.add_argument("--resolution", type=int, default=448)
    args = parser.parse_args(argv)

    print(f"keras {keras.__version__}, backend: {keras.backend.backend()}")
    keras.utils.set_random_seed(0)
    start = time.perf_counter()
    model = keras_hiri.HiriViT(args.variant, input_shape=(args.resolution,) * 2 + (3,))
    print(f"built {model.name} in {time.perf_counter() - start:.1f} s")

    image = keras_hiri.preprocess_input(load_photo(args.resolution)[None])
    start = time.perf_counter()
    probs = keras.ops.convert_to_numpy(model.predict(image, verbose=0))
    print(f"inference on 1 image ({args.resolution}x{args.resolution}): "
          f"{time.perf_counter() - start:.2f} s (first call, includes tracing)")
    print("\nWARNING: weights=None -- no ImageNet-trained HIRI-ViT exists, so these")
    print("labels come from a randomly initialised network and mean nothing:")
    for synset, name, score in keras_hiri.decode_predictions(probs, top=5)[0]:
        print(f"  {name:<28} {synset}  p={score:.4f}")

    print()
    print(keras_hiri.profile(model).table())
    paper = keras_hiri.PAPER.get(args.variant.upper())
    if paper and args.resolution in paper["gmacs"]:
        print(f"paper: {paper['params_m']} M params, {paper['gmacs'][args.resolution]} GMACs")


if __name__ == "__main__":
    main()
