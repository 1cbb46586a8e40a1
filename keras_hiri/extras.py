"""Optional dependencies, imported only by what needs them.

``import keras_hiri`` needs Keras and one backend. TensorFlow is needed only by
the ``tf.data`` pipelines for streaming sources (:mod:`keras_hiri.training.data`,
:mod:`keras_hiri.training.augmentation`) and by SavedModel / ONNX export; those import
it through :func:`require_tensorflow`, which names the extra to install.
"""

import importlib
import importlib.util


def require(module, feature, extra):
    """Imports ``module`` or raises ``ImportError`` naming ``feature`` and the
    ``keras-hiri[extra]`` that installs it."""
    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise ImportError(
            f"{feature} needs the '{module}' package, which is not installed. "
            f"Install it with: pip install 'keras-hiri[{extra}]'"
        ) from e


def ensure_installed(module, feature, extra):
    """Like :func:`require`, without importing ``module`` (for work that runs it
    in a subprocess)."""
    if importlib.util.find_spec(module) is None:
        raise ImportError(
            f"{feature} needs the '{module}' package, which is not installed. "
            f"Install it with: pip install 'keras-hiri[{extra}]'"
        )


def require_tensorflow(feature):
    return require("tensorflow", feature, "tensorflow")


def has_tensorboard():
    """Whether ``keras.callbacks.TensorBoard`` can write logs here (it needs
    the ``tensorboard`` package, or TensorFlow's summary writer)."""
    return any(importlib.util.find_spec(m) is not None for m in ("tensorboard", "tensorflow"))
