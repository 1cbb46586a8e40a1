"""The README's main job (examples/demo.py) runs end to end on a small input."""

import importlib.util
import os

import pytest

pytest.importorskip("skimage")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _load(name):
    spec = importlib.util.spec_from_file_location(name, os.path.join(ROOT, "examples", f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_demo_classifies_photo_and_prints_profile(capsys):
    demo = _load("demo")
    photo = demo.load_photo(64)
    assert photo.shape == (64, 64, 3) and 0 <= photo.min() and photo.max() <= 255
    demo.main(["--variant", "S", "--resolution", "64"])
    out = capsys.readouterr().out
    assert "randomly initialised" in out
    assert out.count(" p=") == 5
    assert "total" in out and "stage5" in out
