"""Registry checkpoints as local keras-hub presets (:func:`preset_dir`).

Each checkpoint of keras_hiri's weights registry becomes a keras-hub preset
directory, written once from the hash-checked file (nothing is downloaded):
a :class:`~keras_hiri.tasks.hub.HiriViTImageClassifier` with its backbone and
its preprocessor at the checkpoint's resolution. Imported by
:mod:`keras_hiri.tasks.hub`, which re-exports these names.
"""

import json
import os
import shutil
import tempfile

from keras_hiri import builder
from keras_hiri.io import weights as weights_lib

STAMP = "keras_hiri.json"  # registry name and checkpoint sha256 of a cached preset
PRESET_FORMAT = 2  # 2: the preset carries its preprocessor (resolution and evaluation crop)
PRESETS_CACHE = os.path.join(os.path.expanduser("~"), ".keras", "keras_hiri", "presets")


def presets():
    """``{name: description}`` of the registry checkpoints, each a preset."""
    return {
        name: (f"HIRI-ViT-{entry['variant']} trained on {entry['dataset']} at "
               f"{entry['resolution']}x{entry['resolution']}, {entry['classes']} classes")
        for name, entry in weights_lib.registry().items()
    }


def preset_dir(name, cache_dir=None):
    """A local keras-hub preset directory of registry checkpoint ``name``.

    Written once (from the hash-checked checkpoint) under ``cache_dir``
    (default ``~/.keras/keras_hiri/presets``): an :class:`HiriViTImageClassifier`
    task with its backbone, so that ``keras_hub.models.Backbone.from_preset``,
    ``keras_hub.models.ImageClassifier.from_preset`` and the classes here load
    it. Nothing is downloaded.
    """
    registry = weights_lib.registry()
    if name not in registry:
        raise ValueError(
            f"Unknown HIRI-ViT preset {name!r}. Available: {sorted(registry)}"
        )
    entry = registry[name]
    path = weights_lib.fetch(name)  # hash-checked against the registry's sha256
    digest = entry["sha256"]
    target = os.path.join(cache_dir or PRESETS_CACHE, name)
    if _stamped(target, digest):
        return target
    from keras_hiri.tasks import hub  # the classes (this module is imported by hub)

    source = builder.HiriViT(
        entry["variant"], input_shape=(None, None, 3), classes=entry["classes"],
        classifier_activation=None, weights=path,
    )
    backbone = hub.HiriViTBackbone(entry["variant"])
    side = entry["resolution"]
    preprocessor = hub.HiriViTImageClassifierPreprocessor(hub.HiriViTImageConverter(image_size=(side, side)))
    classifier = hub.HiriViTImageClassifier(backbone, num_classes=entry["classes"], preprocessor=preprocessor)
    by_name = {layer.name: layer for layer in source.layers}
    targets = [layer for layer in [*backbone.layers, *classifier.layers]
               if layer.weights and layer is not backbone]
    missing = [layer.name for layer in targets if layer.name not in by_name]
    if missing:  # the layer names are the checkpoint's contract
        raise RuntimeError(f"preset {name!r}: no weights for layers {missing}")
    for layer in targets:
        layer.set_weights(by_name[layer.name].get_weights())
    # Written aside, then renamed into place: a reader (another process
    # included) sees no directory or a complete one.
    os.makedirs(os.path.dirname(target), exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=f".{name}.", dir=os.path.dirname(target))
    try:
        classifier.save_to_preset(tmp)
        with open(os.path.join(tmp, STAMP), "w") as f:
            json.dump({"registry_name": name, "sha256": digest, "format": PRESET_FORMAT,
                       "class_names": entry.get("class_names")}, f, indent=1)
        if os.path.exists(target) and not _stamped(target, digest):
            shutil.rmtree(target, ignore_errors=True)  # stale: another checkpoint
        try:
            os.rename(tmp, target)
        except OSError:
            if not _stamped(target, digest):  # not a concurrent writer's copy
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def _stamped(directory, digest):
    """Whether ``directory`` is a complete preset of the checkpoint ``digest``."""
    try:
        with open(os.path.join(directory, STAMP)) as f:
            stamp = json.load(f)
        return stamp.get("sha256") == digest and stamp.get("format") == PRESET_FORMAT
    except (OSError, ValueError):
        return False


def local_preset(preset):
    """A registry name becomes its local preset directory; anything else
    (a directory, a handle) is passed through to keras-hub."""
    if isinstance(preset, str) and preset in weights_lib.registry():
        return preset_dir(preset)
    return preset
