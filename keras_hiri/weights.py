"""Resolving the ``weights=`` argument, before anything is built.

``weights`` may be ``None`` (random initialisation), a registry name, or the
path of a ``.weights.h5`` / ``.keras`` file saved from a HIRI-ViT model.

No HIRI-ViT checkpoint trained on ImageNet exists anywhere (the authors
published none and this project has not trained one), so ``"imagenet"`` raises
an error that says so instead of loading anything.
"""

import os
import zipfile

import h5py

# Registry of downloadable checkpoints: name -> {variant, dataset, resolution,
# classes, url, sha256}. Empty until this project publishes a checkpoint that was
# really trained; see README "Weights".
REGISTRY = {}

NO_IMAGENET = (
    "weights='imagenet' cannot be loaded: no HIRI-ViT checkpoint trained on "
    "ImageNet exists (the paper's authors released no weights and this project "
    "has not trained one). Pass weights=None for a randomly initialised model, "
    "or the path of a '.weights.h5' / '.keras' file you trained yourself."
)


def resolve(weights):
    """Returns ``None`` or an existing file path; raises ``ValueError`` otherwise."""
    if weights is None:
        return None
    if not isinstance(weights, (str, os.PathLike)):
        raise ValueError(
            "weights must be None, a registry name or a file path. "
            f"Received: weights={weights!r} of type {type(weights).__name__}"
        )
    weights = os.fspath(weights)
    if weights == "imagenet":
        raise ValueError(NO_IMAGENET)
    if weights in REGISTRY:  # pragma: no cover - empty registry, see module doc
        raise ValueError(f"Registry checkpoint {weights!r} is not downloadable here.")
    if os.path.isfile(weights):
        if not weights.endswith((".weights.h5", ".keras")):
            raise ValueError(
                f"weights file {weights!r} must end in '.weights.h5' or '.keras'."
            )
        return weights
    known = ["imagenet (not available: no checkpoint exists)", *sorted(REGISTRY)]
    raise ValueError(
        f"weights={weights!r} is neither None, a known name ({', '.join(known)}), "
        "nor an existing '.weights.h5' / '.keras' file."
    )


def _open_weights_h5(path):
    """Opens the weights of ``path`` as an ``h5py.File`` (inside a ``.keras`` zip too)."""
    if path.endswith(".keras"):
        archive = zipfile.ZipFile(path)
        return h5py.File(archive.open("model.weights.h5"), "r")
    return h5py.File(path, "r")


def checkpoint_num_classes(path):
    """Number of classes of the ``predictions`` layer stored in ``path``.

    Returns ``None`` when the checkpoint has no classifier (``include_top=False``).
    """
    # Keras stores a functional model's layers under names derived from their
    # classes ("layers/dense"), not from layer.name; the classifier is the only
    # top-level Dense of a HIRI-ViT.
    with _open_weights_h5(path) as f:
        group = f.get("layers/dense/vars")
        if group is None or "0" not in group:
            return None
        return int(group["0"].shape[-1])
