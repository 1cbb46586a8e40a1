"""Old module paths resolve to the moved modules, with a warning."""

import importlib
import sys

import pytest

import keras_hiri
from keras_hiri import compat


@pytest.mark.parametrize("old", sorted(compat.MOVED))
def test_old_module_path_is_the_new_module_with_a_warning(old):
    if old == "hub":
        pytest.importorskip("keras_hub")
    sys.modules.pop(f"keras_hiri.{old}", None)
    with pytest.warns(DeprecationWarning, match=f"keras_hiri.{old} moved to keras_hiri.{compat.MOVED[old]}"):
        module = importlib.import_module(f"keras_hiri.{old}")
    new = importlib.import_module(f"keras_hiri.{compat.MOVED[old]}")
    assert module is new
    assert new.__spec__.name == f"keras_hiri.{compat.MOVED[old]}"


def test_old_attribute_path_and_training_package(monkeypatch):
    from keras_hiri.io import serving

    monkeypatch.delattr(keras_hiri, "serving", raising=False)  # set by an earlier import
    monkeypatch.delitem(sys.modules, "keras_hiri.serving", raising=False)
    from keras_hiri.training import train

    with pytest.warns(DeprecationWarning, match="keras_hiri.serving moved"):
        assert keras_hiri.serving is serving
    assert train is keras_hiri.train
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        keras_hiri.nothing
