"""Regenerates the cross-backend reference (tests/data/tiny_reference.*).

Run once, on any backend (the committed files were made with TensorFlow):
    KERAS_BACKEND=tensorflow python -m tests.data.make_reference
Every backend's test then loads the same .weights.h5 and must reproduce the
stored logits and pyramid features within 1e-4.
"""

import os

import keras
import numpy as np

from tests.tiny import images, randomize_batchnorm_statistics, tiny_model

HERE = os.path.dirname(os.path.abspath(__file__))


def main():
    keras.utils.set_random_seed(1234)
    model = tiny_model(classifier_activation=None)
    randomize_batchnorm_statistics(model)
    # A unit-scale classifier makes the logits O(1-10), so an absolute 1e-4
    # tolerance on them is a strict test.
    head = model.get_layer("predictions")
    head.kernel.assign(np.random.default_rng(2).normal(0, 1, head.kernel.shape).astype("float32"))
    x = images(2, seed=1)
    features = keras.Model(model.input, [model.output, *model.pyramid_outputs.values()])
    outputs = [keras.ops.convert_to_numpy(o) for o in features(x, training=False)]
    model.save_weights(os.path.join(HERE, "tiny_reference.weights.h5"))
    np.savez_compressed(
        os.path.join(HERE, "tiny_reference.npz"),
        images=x.astype("uint8"),
        logits=outputs[0],
        **{key: out for key, out in zip(model.pyramid_outputs, outputs[1:])},
        backend=keras.backend.backend(),
    )
    print("wrote reference from backend", keras.backend.backend(), [o.shape for o in outputs])


if __name__ == "__main__":
    main()
