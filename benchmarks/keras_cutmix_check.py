"""Does keras.layers.CutMix inside tf.data give labels that match the pasted area?

    KERAS_BACKEND=jax python benchmarks/keras_cutmix_check.py

Mixes a black and a white image 20 times with Keras' CutMix (in a tf.data map,
as a training pipeline would) and with keras_hiri's MixLabels, and prints for
each the largest gap between sample 0's label weight on its own class and the
share of its own (black) pixels. keras_hiri uses MixLabels because of this gap.
"""

import keras
import numpy as np
import tensorflow as tf

from keras_hiri.augmentation import MixLabels


def gaps(mix):
    images = np.stack([np.zeros((16, 16, 3)), np.full((16, 16, 3), 255.0)]).astype("float32")
    labels = np.eye(2, dtype="float32")
    ds = tf.data.Dataset.from_tensors((images, labels)).repeat(20).map(mix)
    out = []
    for x, y in ds.as_numpy_iterator():
        own_pixels = 1.0 - x[0].mean() / 255.0
        out.append(abs(float(y[0, 0]) - own_pixels))
    return max(out)


def main():
    cutmix = keras.layers.CutMix(factor=1.0, seed=1)

    def keras_mix(x, y):
        out = cutmix({"images": x, "labels": y}, training=True)
        return out["images"], out["labels"]

    ours = MixLabels(2, mixup_alpha=0.0, cutmix_alpha=1.0, label_smoothing=0.0, seed=1)
    print(f"backend {keras.backend.backend()}, keras {keras.__version__}")
    print(f"keras.layers.CutMix: max |label weight - own-pixel share| = {gaps(keras_mix):.3f}")
    print(f"keras_hiri MixLabels: max |label weight - own-pixel share| = "
          f"{gaps(lambda x, y: ours(x, tf.argmax(y, -1))):.3f}")


if __name__ == "__main__":
    main()
