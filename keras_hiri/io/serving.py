"""Export for serving: a TensorFlow SavedModel laid out for TF Serving, and ONNX.

``export(model, "served")`` writes ``served/<version>/`` with three signatures:

* ``serve_images``: ``images`` float32 ``(batch, H, W, 3)`` in ``[0, 255]``;
* ``serve_bytes``: ``image_bytes`` string ``(batch,)`` of encoded JPEG/PNG/GIF/BMP,
  decoded, resized (bilinear, to ``H x W``) and cast inside the graph;
* ``serving_default``: one of the two (``default_input="images"`` or ``"bytes"``).

Each returns the model's output under what it is (``probabilities``,
``logits``, ``scores`` or ``features``) and, for classifiers,
``top_k_indices`` (int32) and ``top_k_scores``. The input specs are fixed, so a wrong dtype or shape is
rejected by the signature instead of producing a wrong answer. ImageNet-style
normalisation is inside the model (``include_preprocessing=True``).

The SavedModel is always written by TensorFlow. A model built on JAX or PyTorch
is saved to a ``.keras`` file and exported by a TensorFlow-backend subprocess
(``python -m keras_hiri.cli.export``); the ``.keras`` format is backend-independent,
so the served graph computes the same function (tested to 1e-4).
"""

import os
import subprocess
import sys
import tempfile

from keras_hiri import checks
from keras_hiri.model import is_channels_first

FORMATS = ("tf_saved_model", "onnx")
ONNX_OPSET = 17
INPUTS = ("images", "bytes")
DEFAULT_TOP_K = 5


def output_kind(model):
    """What ``model``'s output is, the name it is served under:
    ``"probabilities"`` (softmax), ``"logits"`` (no activation), ``"scores"``
    (another activation) or ``"features"`` (a backbone: pooled or a map)."""
    import keras

    last = model.layers[-1]
    pooled = (keras.layers.GlobalAveragePooling2D, keras.layers.GlobalMaxPooling2D)
    if len(model.output.shape) != 2 or isinstance(last, pooled):
        return "features"
    if not isinstance(last, (keras.layers.Dense, keras.layers.Activation)):
        return "features"
    activation = keras.activations.serialize(last.activation) if last.activation else "linear"
    if activation == "softmax":
        return "probabilities"
    return "logits" if activation == "linear" else "scores"


def _validate(model, path, format, version, top_k, default_input):
    """Checks the arguments; returns ``(target path, output kind, top_k)``."""
    checks.built_model(model, "export")
    if format not in FORMATS:
        raise ValueError(f"format must be one of {FORMATS}. Received: format={format!r}")
    if format == "onnx" and not os.fspath(path).endswith(".onnx"):
        raise ValueError(f"With format='onnx', path is the output file and must end in '.onnx'. Received: {path!r}")
    checks.int_at_least("version", version)  # TF Serving's folder
    if default_input not in INPUTS:
        raise ValueError(f"default_input must be one of {INPUTS}. Received: {default_input!r}")
    shape = tuple(model.input.shape[1:])
    channels = shape[0] if is_channels_first(model) else shape[-1]
    if len(shape) != 3 or channels != 3 or None in shape:
        raise ValueError(
            "export needs a model with a static RGB input (H, W, 3), or (3, H, W) "
            "channels_first; build it with input_shape=(H, W, 3). "
            f"Received input shape {shape}"
        )
    kind = output_kind(model)
    if kind == "features":
        if top_k is not None:
            raise ValueError(
                "top_k ranks classes; this model outputs features (a backbone, "
                f"output shape {tuple(model.output.shape)}), so pass top_k=None. "
                f"Received: top_k={top_k!r}"
            )
    else:
        classes = model.output.shape[-1]
        top_k = min(DEFAULT_TOP_K, classes) if top_k is None else top_k
        if not isinstance(top_k, int) or not 1 <= top_k <= classes:
            raise ValueError(f"top_k must be None or an int in [1, {classes}]. Received: top_k={top_k!r}")
    if format == "onnx":
        return os.fspath(path), kind, top_k
    target = os.path.join(os.fspath(path), str(version))
    if os.path.exists(target) and os.listdir(target):
        raise ValueError(f"{target!r} already exists and is not empty; pick another version.")
    return target, kind, top_k


def export(model, path, format="tf_saved_model", version=1, top_k=None, default_input="images"):
    """Writes ``path/<version>/`` (a SavedModel for TF Serving), or with
    ``format="onnx"`` the ONNX file ``path`` (input ``images``, float32
    ``(batch, H, W, 3)``; outputs as the SavedModel's). Returns the path written.

    The model's output is served under what it is (:func:`output_kind`):
    ``probabilities``, ``logits``, ``scores`` or ``features``. Classifier
    outputs also get ``top_k_indices`` / ``top_k_scores`` (``top_k=None``:
    5, or the class count if smaller); a backbone's features get no top-k, and
    asking for one is a ``ValueError``.

    ONNX goes through the SavedModel and ``tf2onnx`` (opset 17); install the
    ``[onnx]`` extra. The image-bytes signature exists only in the SavedModel.
    """
    import keras

    from keras_hiri import extras

    extras.ensure_installed("tensorflow", "keras_hiri.export (SavedModel / ONNX)", "tensorflow")
    target, kind, top_k = _validate(model, path, format, version, top_k, default_input)
    if format == "onnx":
        return _export_onnx(model, target, top_k)
    if keras.backend.backend() != "tensorflow":
        with tempfile.TemporaryDirectory() as tmp:
            saved = os.path.join(tmp, "model.keras")
            model.save(saved)
            env = dict(os.environ, KERAS_BACKEND="tensorflow")
            cmd = [sys.executable, "-m", "keras_hiri.cli.export", saved, os.fspath(path),
                   "--version", str(version), "--default-input", default_input]
            if top_k is not None:
                cmd += ["--top-k", str(top_k)]
            result = subprocess.run(cmd, env=env, capture_output=True, text=True)
            if result.returncode != 0:
                raise RuntimeError(f"TensorFlow export subprocess failed:\n{result.stderr[-3000:]}")
        return target
    return _export_tf(model, target, kind, top_k, default_input)


def _export_onnx(model, target, top_k):
    try:
        import tf2onnx  # noqa: F401
    except ImportError as e:
        raise ValueError("format='onnx' needs tf2onnx: pip install 'keras-hiri[onnx]'") from e
    with tempfile.TemporaryDirectory() as tmp:
        saved = export(model, os.path.join(tmp, "saved"), version=1, top_k=top_k)
        args = ["--saved-model", saved, "--signature_def", "serve_images", "--opset", str(ONNX_OPSET),
                "--output", target]
        cmd = [sys.executable, "-c", f"from keras_hiri.io.serving import tf2onnx_main; tf2onnx_main({args!r})"]
        result = subprocess.run(cmd, capture_output=True, text=True)
        if result.returncode != 0:
            raise RuntimeError(f"tf2onnx failed:\n{result.stderr[-3000:]}")
    return target


def tf2onnx_main(argv):
    """tf2onnx's command line on ``argv``, converting TensorFlow's ``Erfc`` (in
    the exact GELU, ``keras.ops.gelu``) as ``1 - Erf``: ONNX has no Erfc."""
    import numpy as np
    from tf2onnx import convert, utils
    from tf2onnx.handler import tf_op

    @tf_op("Erfc")
    class Erfc:  # noqa: F841  (registered by the decorator)
        @classmethod
        def version_9(cls, ctx, node, **kwargs):
            node.type = "Erf"
            dtype = utils.map_onnx_to_numpy_type(ctx.get_dtype(node.input[0]))
            one = ctx.make_const(utils.make_name("erfc_one"), np.ones((), dtype))
            sub = ctx.insert_new_node_on_output("Sub", node.output[0], name=utils.make_name(node.name),
                                                inputs=[one.output[0], node.output[0]])
            ctx.copy_shape(node.output[0], sub.output[0])

    sys.argv = ["tf2onnx.convert", *argv]
    convert.main()


def _export_tf(model, target, kind, top_k, default_input):
    import tensorflow as tf

    first = is_channels_first(model)
    shape = list(model.input.shape[1:])  # (H, W, 3), or (3, H, W) channels_first
    h, w = shape[1:] if first else shape[:2]
    layout = "3, H, W" if first else "H, W, 3"

    def decode(data):
        image = tf.io.decode_image(data, channels=3, expand_animations=False)
        image = tf.image.resize(tf.cast(image, tf.float32), (h, w), method="bilinear")
        image = tf.clip_by_value(image, 0.0, 255.0)
        return tf.transpose(image, (2, 0, 1)) if first else image

    class Server(tf.Module):
        def __init__(self, keras_model):
            super().__init__()
            self.model = keras_model

        def outputs(self, images):
            result = tf.cast(self.model(images, training=False), tf.float32)
            if top_k is None:
                return {kind: result}
            top = tf.math.top_k(result, k=top_k)
            return {kind: result, "top_k_indices": top.indices, "top_k_scores": top.values}

        @tf.function(input_signature=[tf.TensorSpec([None, *shape], tf.float32, name="images")])
        def serve_images(self, images):
            # A signature's spec fixes the dtype but TensorFlow does not enforce
            # the rank/shape of a fed tensor, so check them explicitly.
            checks = [
                tf.debugging.assert_rank(images, 4, message=f"images must be (batch, {layout})"),
                tf.debugging.assert_equal(
                    tf.shape(images)[1:], tf.constant(shape),
                    message=f"images must be (batch, {', '.join(map(str, shape))}) float32 in [0, 255]",
                ),
            ]
            with tf.control_dependencies(checks):
                return self.outputs(tf.identity(images))

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="image_bytes")])
        def serve_bytes(self, image_bytes):
            images = tf.map_fn(
                decode, image_bytes, fn_output_signature=tf.TensorSpec(shape, tf.float32)
            )
            return self.outputs(images)

    server = Server(model)
    signatures = {
        "serve_images": server.serve_images,
        "serve_bytes": server.serve_bytes,
        "serving_default": server.serve_images if default_input == "images" else server.serve_bytes,
    }
    tf.saved_model.save(server, target, signatures=signatures)
    return target
