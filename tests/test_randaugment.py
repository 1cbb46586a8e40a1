import keras
import numpy as np
import pytest

from keras_hiri.training import randaugment
from keras_hiri.training.recipe import DEFAULTS
from tests.helpers import to_numpy


def _images():
    """Four images that reach every branch of Keras' equalization rule."""
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (4, 16, 12, 3)).astype("float32")
    x[1] = rng.uniform(20, 60, (16, 12, 3))  # a narrow range: a steep table
    x[2, ..., 0] = 77.0  # one level: the channel stays as it is
    x[3] = np.round(x[3] / 32) * 32  # few levels
    return x


def _keras_per_image(images, **kwargs):
    """``keras.layers.Equalization`` on each image alone (it equalizes over the
    whole batch, so a batch of one is one image)."""
    layer = keras.layers.Equalization(**kwargs)
    return np.stack([to_numpy(layer(images[i:i + 1], training=True))[0] for i in range(len(images))])


@pytest.mark.parametrize("value_range", [(0, 255), (0, 1)])
@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
def test_equalization_equals_keras_on_each_image_alone(value_range, data_format):
    x = _images() * (value_range[1] / 255.0)
    if data_format == "channels_first":
        x = np.transpose(x, (0, 3, 1, 2))
    kwargs = dict(value_range=value_range, data_format=data_format)
    expected = _keras_per_image(x, **kwargs)
    layer = randaugment.Equalization(**kwargs)
    np.testing.assert_array_equal(to_numpy(layer(x, training=True)), expected)
    np.testing.assert_array_equal(to_numpy(layer(x[1], training=True)), expected[1])  # unbatched
    np.testing.assert_array_equal(to_numpy(layer(x, training=False)), x)
    assert not np.array_equal(expected[1], x[1])  # the test would see a no-op


def test_equalization_is_per_image_unlike_keras():
    """Keras' result for an image depends on its batch; keras_hiri's does not."""
    x = _images()
    alone = to_numpy(randaugment.Equalization()(x[:1], training=True))[0]
    batched = to_numpy(randaugment.Equalization()(x, training=True))[0]
    np.testing.assert_array_equal(alone, batched)
    keras_batched = to_numpy(keras.layers.Equalization()(x, training=True))[0]
    assert not np.array_equal(keras_batched, alone)


def test_equalization_inside_tf_data_equals_keras_on_each_image():
    """In tf.data the layers run TensorFlow ops whatever the Keras backend is
    (16 bins: on JAX, Keras traces a Python loop of one step per bin)."""
    tf = pytest.importorskip("tensorflow")
    x = _images()
    ours, theirs = randaugment.Equalization(bins=16), keras.layers.Equalization(bins=16)
    pairs = [(a.numpy(), b.numpy()) for a, b in tf.data.Dataset.from_tensor_slices(x).batch(1).map(
        lambda t: (ours(t, training=True), theirs(t, training=True)))]
    assert len(pairs) == 4
    for a, b in pairs:
        np.testing.assert_array_equal(a, b)
    batched = next(iter(tf.data.Dataset.from_tensors(x).map(lambda t: ours(t, training=True))))
    np.testing.assert_array_equal(batched.numpy(), np.concatenate([a for a, _ in pairs]))


@pytest.mark.skipif(keras.backend.backend() != "jax", reason="jax.jit of the layer")
def test_equalization_traces_under_jax_jit():
    import jax

    x = _images()
    layer = randaugment.Equalization()
    compiled = jax.jit(lambda t: layer.transform_images(t, None, training=True))
    np.testing.assert_array_equal(np.asarray(compiled(x)), _keras_per_image(x))


def test_recipe_randaugment_uses_the_per_image_equalization_and_round_trips():
    layer = randaugment.recipe_randaugment(seed=3)
    assert isinstance(layer, keras.layers.RandAugment)
    assert isinstance(layer.equalization, randaugment.Equalization)
    assert (layer.num_ops, layer.value_range) == (DEFAULTS["randaugment_ops"], (0, 255))
    config = keras.saving.serialize_keras_object(layer)
    restored = keras.saving.deserialize_keras_object(config)
    assert type(restored) is randaugment.RandAugment
    assert isinstance(restored.equalization, randaugment.Equalization)
    assert restored.get_config() == layer.get_config()
    x = _images()
    out = to_numpy(layer(x, training=True))
    assert out.shape == x.shape and 0 <= out.min() and out.max() <= 255
