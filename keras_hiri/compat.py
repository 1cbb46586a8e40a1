"""Old module paths, kept working with a ``DeprecationWarning``.

Before 0.2 every module sat at the package's top level (``keras_hiri.recipe``,
``keras_hiri.hub``, ...). They now live in ``layers/``, ``training/``, ``tasks/``
and ``io/``; ``import keras_hiri.hub`` still works and returns the new
module (the same object, so patches and ``isinstance`` checks agree), with a
warning naming the new path. ``keras_hiri.training`` is now the package;
it re-exports ``train``. The public names of ``keras_hiri`` itself did not move.
"""

import importlib
import importlib.abc
import importlib.util
import sys
import warnings

MOVED = {
    "stem": "layers.stem", "blocks": "layers.blocks", "downsampling": "layers.downsampling",
    "head": "layers.head", "recipe": "training.recipe", "data": "training.data",
    "pipeline": "training.pipeline", "augmentation": "training.augmentation",
    "randaugment": "training.randaugment", "mixing": "training.mixing",
    "distillation": "training.distillation",
    "train_state": "training.state", "hub": "tasks.hub", "detection": "tasks.detection",
    "segmentation": "tasks.segmentation", "weights": "io.weights",
    "conversion": "io.conversion", "serving": "io.serving",
}


class MovedModuleFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Resolves ``keras_hiri.<old>`` to ``keras_hiri.<new>`` (see :data:`MOVED`)."""

    def __init__(self):
        self.specs = {}  # the new modules' own specs, by module name

    def find_spec(self, fullname, path=None, target=None):
        package, _, old = fullname.partition(".")
        if package != "keras_hiri" or old not in MOVED:
            return None
        return importlib.util.spec_from_loader(fullname, self)

    def create_module(self, spec):
        old = spec.name.partition(".")[2]
        new = f"keras_hiri.{MOVED[old]}"
        warnings.warn(f"{spec.name} moved to {new}; import it from there (or use the names "
                      "exported by keras_hiri).", DeprecationWarning, stacklevel=3)
        module = importlib.import_module(new)
        self.specs[module.__name__] = module.__spec__
        return module

    def exec_module(self, module):
        """The module is the already executed new one: the import machinery
        set its ``__spec__`` to the old name's, which is put back here."""
        module.__spec__ = self.specs[module.__name__]


def install():
    """Puts the finder first on ``sys.meta_path`` (once): ``keras_hiri/data/``
    (package data) would otherwise import as a namespace package."""
    if not any(isinstance(finder, MovedModuleFinder) for finder in sys.meta_path):
        sys.meta_path.insert(0, MovedModuleFinder())
