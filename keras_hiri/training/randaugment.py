"""RandAugment as the recipe runs it: Keras core's ``keras.layers.RandAugment``
with one of its eleven operations, histogram equalization, replaced.

Keras 3.15's ``keras.layers.Equalization`` has two properties this recipe
cannot keep:

* **Speed off TensorFlow.** It picks its histogram code by the *global* Keras
  backend: on JAX it is a Python loop of 256 bins, each a handful of ops. Inside
  ``tf.data`` (where the layer runs TensorFlow ops on every backend) that loop is
  traced into the pipeline's graph. Measured on this machine
  (``python benchmarks/augmentation_speed.py``): a JAX-backend ``tf.data``
  training pipeline took ~20 s to build and ran each batch several times slower
  than the same pipeline under the TensorFlow backend; eagerly (the in-memory
  pipeline on JAX) equalization was most of RandAugment's time.
* **Meaning.** It equalizes each channel over the *whole batch*, so one image's
  result depends on the other images of its batch. Histogram equalization in
  RandAugment (PIL's ``ImageOps.equalize``, which timm and DeiT use) works on one
  image at a time.

:class:`Equalization` computes every image's and channel's histogram at once,
one ``bincount`` over bins offset by image and channel (on JAX, whose
``bincount`` cannot be traced, one scatter-add), and applies Keras' own
lookup-table rule per image: a fixed number of ops whatever the bin count, on
every backend and in ``tf.data``.
``tests/test_randaugment.py`` checks that it equals ``keras.layers.Equalization``
applied to each image alone, on every backend, eagerly and inside ``tf.data``.
"""

import keras

from keras_hiri.training.recipe import DEFAULTS


@keras.saving.register_keras_serializable(package="keras_hiri")
class Equalization(keras.layers.Equalization):
    """Histogram equalization of each image and channel on its own.

    Same arguments and lookup-table rule as ``keras.layers.Equalization``
    (``value_range``, ``bins``, ``data_format``), but the histogram of an image
    is its own, not its batch's, and all of them are built at once (traceable,
    and fast inside ``tf.data``).
    """

    def transform_images(self, images, transformation, training=True):
        if not training:
            return images
        b = self.backend
        images = b.cast(images, self.compute_dtype)
        unbatched = len(images.shape) == 3
        x = b.numpy.expand_dims(images, 0) if unbatched else images
        if self.data_format == "channels_first":
            x = b.numpy.transpose(x, (0, 2, 3, 1))
        shape = b.core.shape(x)
        batch, channels = shape[0], x.shape[-1]
        x = b.numpy.reshape(x, (batch, -1, channels))
        low, high = self.value_range
        if (low, high) != (0, 255):  # Keras' affine map onto [0, 255], and back below
            x = x * (255.0 / (high - low)) - low * (255.0 / (high - low))
        # Image b's channel c owns bins [(b * channels + c) * bins, ... + bins).
        offsets = b.numpy.reshape(b.numpy.arange(batch * channels, dtype="int32") * self.bins,
                                  (batch, 1, channels))
        bin_of = b.cast(b.cast(x, "float32") * (self.bins - 1) / 255.0, "int32")  # Keras' binning
        hist = self._histograms(b.numpy.clip(bin_of, 0, self.bins - 1) + offsets, batch * channels)
        table = b.numpy.reshape(self._lookup_tables(hist), (-1,))
        level = b.cast(b.numpy.clip((x / 255.0) * (self.bins - 1), 0, self.bins - 1), "int32")
        equalized = b.numpy.take(table, level + offsets)
        # Keras' rule: a channel with at most one distinct level stays as it is.
        flat = b.numpy.reshape(b.numpy.count_nonzero(hist, axis=-1) <= 1, (batch, 1, channels))
        out = b.numpy.where(flat, x, equalized)
        if (low, high) != (0, 255):
            out = out * ((high - low) / 255.0) + low
        out = b.numpy.reshape(b.cast(out, self.compute_dtype), shape)
        if self.data_format == "channels_first":
            out = b.numpy.transpose(out, (0, 3, 1, 2))
        return out[0] if unbatched else out

    def _histograms(self, index, count):
        """``(count, bins)`` int32 histograms from bin indices already offset by
        their row: a ``bincount``, except on JAX, whose ``bincount`` cannot be
        traced: one scatter-add."""
        b = self.backend
        index = b.numpy.reshape(index, (-1,))
        size = count * self.bins
        if b.name == "jax":
            hist = b.core.scatter_update(b.numpy.zeros((size,), dtype="int32"), index[:, None],
                                         b.numpy.ones_like(index), reduction="add")
        else:
            hist = b.cast(b.numpy.bincount(index, minlength=size), "int32")
        return b.numpy.reshape(hist, (count, self.bins))

    def _lookup_tables(self, hist):
        """Keras' lookup table per row: the cumulative histogram from its first
        non-empty bin, scaled to ``[0, 255]`` and rounded."""
        b = self.backend
        cdf = b.numpy.cumsum(hist, axis=-1)
        first = b.numpy.argmax(cdf > 0, axis=-1)[:, None]
        cdf_min = b.numpy.take_along_axis(cdf, first, axis=-1)
        denominator = cdf[:, -1:] - cdf_min
        denominator = b.numpy.where(denominator == 0, b.numpy.ones_like(denominator), denominator)
        table = ((cdf - cdf_min) * 255) / denominator
        return b.numpy.clip(b.numpy.round(table), 0, 255)


@keras.saving.register_keras_serializable(package="keras_hiri")
class RandAugment(keras.layers.RandAugment):
    """``keras.layers.RandAugment`` with :class:`Equalization` (per image,
    traceable) in place of Keras' batch-wide, loop-built one. Same arguments.

    As in Keras, the ``num_ops`` operations are chosen once per batch; their
    magnitudes are drawn per image.
    """

    def __init__(self, value_range=(0, 255), num_ops=2, factor=0.5, interpolation="bilinear",
                 seed=None, data_format=None, **kwargs):
        super().__init__(value_range=value_range, num_ops=num_ops, factor=factor,
                         interpolation=interpolation, seed=seed, data_format=data_format, **kwargs)
        self.equalization = Equalization(value_range=self.value_range, data_format=data_format, **kwargs)


def recipe_randaugment(seed=None):
    """The recipe's RandAugment (Sec. 5.1, DeiT/timm values) on ``[0, 255]``
    images: ``DEFAULTS["randaugment_ops"]`` operations at Keras factor
    ``DEFAULTS["randaugment_factor"]``."""
    return RandAugment(
        value_range=(0, 255), num_ops=DEFAULTS["randaugment_ops"],
        factor=DEFAULTS["randaugment_factor"], seed=seed,
    )
