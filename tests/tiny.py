"""A tiny HIRI-ViT used wherever size does not matter (every block type, five stages)."""

import numpy as np

import keras_hiri
from keras_hiri.layers.composite import model_layers

TINY = keras_hiri.HiriViTConfig(
    widths=(8, 16, 24, 32, 48),
    depths=(1, 1, 1, 2, 1),
    mlp_ratios=(2, 2, 2, 2, 2),
    num_heads=(None, None, None, 2, 3),
    head_dim=16,
)
# Odd, non-square: exercises ceil strides, cropping and the ceil-mode pooling.
TINY_INPUT_SHAPE = (100, 76, 3)
TINY_CLASSES = 10


def tiny_model(**kwargs):
    kwargs.setdefault("input_shape", TINY_INPUT_SHAPE)
    kwargs.setdefault("classes", TINY_CLASSES)
    return keras_hiri.HiriViT(TINY, **kwargs)


def images(n=2, shape=TINY_INPUT_SHAPE, seed=0):
    """Random ``[0, 255]`` integer-valued RGB images (exact in any float type)."""
    return np.random.default_rng(seed).integers(0, 256, (n, *shape)).astype("float32")


def randomize_batchnorm_statistics(model, seed=0):
    """Gives every BatchNorm non-trivial statistics and affine parameters, so
    inference-mode BN is really exercised (fresh BN is the identity)."""
    import keras

    rng = np.random.default_rng(seed)
    for layer in model_layers(model):
        if isinstance(layer, keras.layers.BatchNormalization):
            c = layer.moving_mean.shape
            layer.moving_mean.assign(rng.normal(0, 0.2, c).astype("float32"))
            layer.moving_variance.assign(rng.uniform(0.5, 1.5, c).astype("float32"))
            layer.gamma.assign(rng.uniform(0.8, 1.2, c).astype("float32"))
            layer.beta.assign(rng.normal(0, 0.1, c).astype("float32"))


def randomize_for_folding(model, seed=0):
    """:func:`randomize_batchnorm_statistics`, plus non-zero conv biases, so
    the ``bias * s + t`` part of a BN fold matters. Returns ``model``."""
    import keras

    randomize_batchnorm_statistics(model, seed)
    rng = np.random.default_rng(seed + 1)
    for layer in model_layers(model):
        if isinstance(layer, keras.layers.Conv2D | keras.layers.DepthwiseConv2D) and layer.use_bias:
            layer.bias.assign(rng.normal(0, 0.1, layer.bias.shape).astype("float32"))
    return model
