"""The model's parts, below the blocks: initialisers, convolutions, norms,
resampling, the composite-layer base and drop-path.

Everything here is backend-agnostic (``keras.ops``; the few backend op
implementations are :mod:`keras_hiri.ops`). The conventions follow the
authors' public Dual-ViT / Wave-ViT code, as ``docs/DESIGN.md`` explains:

* convolutions: ``normal(0, sqrt(2 / fan_out))``; linear layers: truncated
  normal with std 0.02 (on JAX drawn by NumPy on the host); all biases zero;
* BatchNorm: momentum 0.9 (PyTorch 0.1), epsilon 1e-5; LayerNorm: epsilon 1e-6;
* GELU is the exact (erf) form, as ``torch.nn.GELU()``;
* a stride-2 ``k x k`` convolution pads ``k // 2`` on *every* side (PyTorch
  style, an int ``padding`` of :class:`~keras_hiri.layers.conv.Conv2D`), not
  Keras' ``"same"`` (which pads only after). Both give ``ceil(n / 2)``
  outputs, but only the symmetric one lets a PyTorch checkpoint be ported
  without numerical drift.
"""

import keras

PACKAGE = "keras_hiri"


def register(cls):
    """Registers a layer class for ``keras.saving`` under ``keras_hiri>``."""
    return keras.saving.register_keras_serializable(package=PACKAGE)(cls)
