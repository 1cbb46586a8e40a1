"""Do Keras' and keras-cv's CutMix inside tf.data give labels that match the pasted area?

    KERAS_BACKEND=jax python benchmarks/keras_cutmix_check.py

Mixes a black and a white image 20 times with Keras core's CutMix and, when
keras-cv is installed (extra ``[kerascv]``), keras-cv's (each in a tf.data map,
as a training pipeline would), and with keras_hiri.training.mixing (as the trainer runs
it), and prints for each the largest gap between sample 0's label weight on its
own class and the share of its own (black) pixels. keras_hiri uses its own
functions because of this gap. It also prints whether keras-cv has a
RandomErasing layer (the paper's recipe uses Random Erasing).
"""

import keras
import numpy as np
import tensorflow as tf

from keras_hiri.training import mixing


IMAGES = np.stack([np.zeros((16, 16, 3)), np.full((16, 16, 3), 255.0)]).astype("float32")
LABELS = np.eye(2, dtype="float32")


def gap(pairs):
    out = []
    for x, y in pairs:
        own_pixels = 1.0 - x[0].mean() / 255.0
        out.append(abs(float(y[0, 0]) - own_pixels))
    return max(out)


def main():
    cutmix = keras.layers.CutMix(factor=1.0, seed=1)

    def keras_mix(x, y):
        out = cutmix({"images": x, "labels": y}, training=True)
        return out["images"], out["labels"]

    ds = tf.data.Dataset.from_tensors((IMAGES, LABELS)).repeat(20).map(keras_mix)
    seed = keras.random.SeedGenerator(1)

    def ours():
        for _ in range(20):
            mix = mixing.sample((16, 16), seed, mixup_alpha=0.0, cutmix_alpha=1.0)
            yield (keras.ops.convert_to_numpy(mixing.mix_images(keras.ops.convert_to_tensor(IMAGES), mix)),
                   keras.ops.convert_to_numpy(mixing.mix_labels(keras.ops.convert_to_tensor(LABELS), mix)))

    print(f"backend {keras.backend.backend()}, keras {keras.__version__}")
    print(f"keras.layers.CutMix: max |label weight - own-pixel share| = {gap(ds.as_numpy_iterator()):.3f}")
    print(f"keras_hiri.training.mixing:   max |label weight - own-pixel share| = {gap(ours()):.3f}")
    try:
        import keras_cv
    except ImportError:
        print("keras-cv: not installed (pip install -e '.[kerascv]')")
        return
    cv_cutmix = keras_cv.layers.CutMix(seed=1)

    def cv_mix(x, y):
        out = cv_cutmix({"images": x, "labels": y}, training=True)
        return out["images"], out["labels"]

    cv_ds = tf.data.Dataset.from_tensors((IMAGES, LABELS)).repeat(20).map(cv_mix)
    print(f"keras_cv.layers.CutMix ({keras_cv.__version__}): max |label weight - own-pixel share| = "
          f"{gap(cv_ds.as_numpy_iterator()):.3f}")
    print(f"keras_cv.layers.RandomErasing exists: {hasattr(keras_cv.layers, 'RandomErasing')}")


if __name__ == "__main__":
    main()
