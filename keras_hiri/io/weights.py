"""The ``weights=`` argument: ``None``, a registry name, or a checkpoint path.

The registry (``keras_hiri/presets/manifest.json``, package data, so it ships in
the wheel with the small checkpoints beside it) maps a name to
``(variant, dataset, resolution, classes)`` and a file with its sha256. A file
is taken from the package's ``presets/`` folder when it ships there,
otherwise fetched from its URL with ``keras.utils.get_file`` into the Keras
cache; either way its hash is checked, and a file that does not match is
deleted and reported, never loaded.

No HIRI-ViT checkpoint trained on ImageNet exists anywhere (the authors
published none and this project has not trained one), so ``"imagenet"`` raises
an error that says so instead of loading anything. The registry holds only
weights this project trained itself, under their real dataset's name.
"""

import hashlib
import json
import os
import zipfile

import h5py

from keras_hiri.variants import variant_name

WEIGHTS_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "presets")
MANIFEST = os.path.join(WEIGHTS_DIR, "manifest.json")

# The ``.weights.h5`` attribute holding a checkpoint's own description.
METADATA_KEY = "keras_hiri"
METADATA_FORMAT = 1

NO_IMAGENET = (
    "weights='imagenet' cannot be loaded: no HIRI-ViT checkpoint trained on "
    "ImageNet exists (the paper's authors released no weights and this project "
    "has not trained one). Pass weights=None for a randomly initialised model, "
    "a registry name ({names}), or the path of a '.weights.h5' / '.keras' file "
    "you trained yourself."
)


def registry():
    """``{name: entry}`` from ``presets/manifest.json`` (empty if absent)."""
    if not os.path.exists(MANIFEST):
        return {}
    with open(MANIFEST) as f:
        return json.load(f)["weights"]


def sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def fetch(name):
    """Path of registry checkpoint ``name``, hash-checked.

    Raises:
        ValueError: unknown name, file unavailable, or hash mismatch (the bad
            file is removed first).
    """
    entries = registry()
    if name not in entries:
        raise ValueError(f"Unknown registry weights {name!r}. Known: {sorted(entries)}")
    entry = entries[name]
    local = os.path.join(WEIGHTS_DIR, entry["file"])
    if os.path.exists(local):
        actual = sha256(local)
        if actual != entry["sha256"]:
            raise ValueError(
                f"Weights file {local!r} is corrupted or truncated: sha256 {actual} != "
                f"{entry['sha256']} in the manifest. Nothing was loaded."
            )
        return local
    if entry.get("url"):
        import keras

        cache_dir = os.environ.get("KERAS_HOME", os.path.expanduser("~/.keras"))
        subdir = os.path.join("models", "keras_hiri")
        os.makedirs(os.path.join(cache_dir, subdir), exist_ok=True)  # else get_file uses /tmp
        try:
            path = keras.utils.get_file(
                entry["file"], entry["url"], file_hash=entry["sha256"],
                cache_dir=cache_dir, cache_subdir=subdir,
            )
        except ValueError:
            cached = os.path.join(cache_dir, subdir, entry["file"])
            if os.path.exists(cached):
                os.remove(cached)
            raise ValueError(
                f"Downloaded weights {entry['file']!r} do not match their sha256 "
                f"({entry['sha256']}); the file was removed and nothing was loaded."
            ) from None
        # get_file has checked the hash of the cached or downloaded file.
        return path
    raise ValueError(f"Registry weights {name!r}: {entry['file']} is not available here.")


def resolve(weights):
    """Validates ``weights``; returns ``None``, or ``(path, entry or None)``."""
    if weights is None:
        return None
    if not isinstance(weights, (str, os.PathLike)):
        raise ValueError(
            "weights must be None, a registry name or a file path. "
            f"Received: weights={weights!r} of type {type(weights).__name__}"
        )
    weights = os.fspath(weights)
    entries = registry()
    if weights == "imagenet":
        raise ValueError(NO_IMAGENET.format(names=", ".join(sorted(entries)) or "none yet"))
    if weights in entries:
        return fetch(weights), entries[weights]
    if os.path.isfile(weights):
        if not weights.endswith((".weights.h5", ".keras")):
            raise ValueError(
                f"weights file {weights!r} must end in '.weights.h5' or '.keras'."
            )
        verify_readable(weights)
        return weights, None
    known = ["imagenet (not available: no checkpoint exists)", *sorted(entries)]
    raise ValueError(
        f"weights={weights!r} is neither None, a known name ({', '.join(known)}), "
        "nor an existing '.weights.h5' / '.keras' file."
    )


def verify_readable(path):
    """Reads every array of the checkpoint ``path`` once.

    Raises:
        ValueError: naming the file, when it is truncated or corrupt (not an
            HDF5 file / zip archive, or an array that cannot be read), so that
            nothing is loaded from it.
    """
    def read(name, item):
        if isinstance(item, h5py.Dataset):
            item[()]

    try:
        with _open_weights_h5(path) as f:
            f.visititems(read)
    except (OSError, KeyError, RuntimeError, ValueError, zipfile.BadZipFile) as e:
        raise _corrupt(path, e) from None


def _corrupt(path, error):
    return ValueError(
        f"weights file {path!r} is corrupt or truncated and cannot be read "
        f"({type(error).__name__}: {error}). Nothing was loaded."
    )


def resolve_checkpoint(weights, config, *, include_top, classes, reset_head):
    """Finds and checks the checkpoint ``weights`` for a model of ``config``.

    Runs before the model is built: a bad name or file, a checkpoint of
    another architecture, or a class-count mismatch raises ``ValueError`` with
    nothing built or loaded. What a checkpoint holds is read from its own
    metadata (:func:`checkpoint_metadata`), never inferred from the file's layout.

    Returns:
        ``None`` (``weights=None``) or ``(path, classes stored in it or None)``.
    """
    resolved = resolve(weights)
    if resolved is None:
        return None
    path, entry = resolved
    if entry is not None and variant_name(config) != entry["variant"].upper():
        raise ValueError(
            f"weights={weights!r} were trained for variant {entry['variant']!r}; "
            f"build that variant to load them. Received variant config: {config}"
        )
    stored = checkpoint_metadata(path)
    if _normalised(stored["config"]) != _normalised(config.to_dict()):
        raise ValueError(
            f"weights file {path!r} holds a HIRI-ViT of variant "
            f"{stored['variant'] or 'custom'} ({_describe(stored['config'])}); the "
            f"model asked for is {variant_name(config) or 'custom'} "
            f"({_describe(config.to_dict())}). Build the checkpoint's variant to load it."
        )
    stored_classes = stored["classes"] if stored["include_top"] else None
    if include_top and stored_classes is None and not reset_head:
        raise ValueError(
            f"weights file {path!r} has no classifier (saved with "
            "include_top=False); build with include_top=False, or pass "
            "reset_head=True to load the backbone under a new, randomly "
            "initialised head."
        )
    if include_top and stored_classes not in (None, classes) and not reset_head:
        raise ValueError(
            f"include_top=True with weights={weights!r} needs classes={stored_classes} "
            f"(the checkpoint's). Received: classes={classes}. Use include_top=False "
            "to load only the backbone, or reset_head=True to re-initialise the "
            "classifier for your classes."
        )
    return path, stored_classes


def _normalised(config):
    return json.loads(json.dumps(config))


def _describe(config):
    return f"widths={list(config['widths'])}, depths={list(config['depths'])}"


def _open_weights_h5(path):
    """Opens the weights of ``path`` as an ``h5py.File`` (inside a ``.keras`` zip too)."""
    if path.endswith(".keras"):
        archive = zipfile.ZipFile(path)
        return h5py.File(archive.open("model.weights.h5"), "r")
    return h5py.File(path, "r")


def write_metadata(path, architecture):
    """Stores ``architecture`` (a HIRI-ViT's ``{"variant", "config",
    "include_top", "classes"}``) as the ``keras_hiri`` attribute of the
    ``.weights.h5`` file ``path`` (other files are left as they are)."""
    path = os.fspath(path)
    if path.endswith(".weights.h5") and os.path.isfile(path):
        with h5py.File(path, "a") as f:
            f.attrs[METADATA_KEY] = json.dumps({"format": METADATA_FORMAT, **architecture})


def checkpoint_metadata(path):
    """What the checkpoint ``path`` holds: ``{"variant", "config",
    "include_top", "classes"}``, as the model that wrote it recorded it (the
    ``keras_hiri`` attribute of a ``.weights.h5`` file, the model config of a
    ``.keras`` file).

    Raises:
        ValueError: the file carries no HIRI-ViT metadata (it was not written
            by a model built with ``keras_hiri.HiriViT``).
    """
    path = os.fspath(path)
    try:
        if path.endswith(".keras"):
            with zipfile.ZipFile(path) as archive:
                config = json.loads(archive.read("config.json"))
            found = config.get("config", {}).get("architecture")
        else:
            with h5py.File(path, "r") as f:
                text = f.attrs.get(METADATA_KEY)
            found = None if text is None else json.loads(text)
    except (OSError, KeyError, ValueError, zipfile.BadZipFile) as e:
        raise _corrupt(path, e) from None
    if not found or "config" not in found:
        raise ValueError(
            f"weights file {path!r} carries no keras_hiri metadata (variant, classes): "
            "it was not saved from a model built by keras_hiri.HiriViT. Build the "
            "model it belongs to and call model.load_weights(path) instead."
        )
    return {key: found.get(key) for key in ("variant", "config", "include_top", "classes")}


def load_into(model, path, stored_classes, build_source):
    """Loads checkpoint ``path`` into ``model``.

    When ``model`` has the checkpoint's structure the file is loaded directly.
    Otherwise (``include_top=False``, or a re-initialised head) a model with the
    checkpoint's structure is built by ``build_source(stored_classes)``, loaded,
    and every layer of ``model`` except the classifier takes its weights by
    name. Any mismatch raises before ``model`` is modified.
    """
    classifier = model.classifier
    same = classifier is not None and stored_classes == classifier.units
    if same or (classifier is None and stored_classes is None):
        model.load_weights(path)
        return model
    source = build_source(stored_classes)
    source.load_weights(path)
    names = {layer.name for layer in source.layers}
    pairs = [
        (layer, source.get_layer(layer.name))
        for layer in model.layers
        if layer.weights and layer is not classifier and layer.name in names
    ]
    values = [src.get_weights() for _, src in pairs]  # read all before writing any
    for (layer, _), value in zip(pairs, values):
        layer.set_weights(value)
    return model
