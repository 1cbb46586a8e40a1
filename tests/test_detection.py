import json

import keras
import numpy as np
import pytest

from tests.helpers import to_numpy

keras_hub = pytest.importorskip("keras_hub")  # CI installs it ([dev])
pytest.importorskip("pycocotools")
pytest.importorskip("skimage")

from keras_hiri import profiling  # noqa: E402
from keras_hiri.tasks import detection  # noqa: E402
from keras_hiri.cli import detect as detect_verb  # noqa: E402

PRESET = "tiny_skimage_patches_64"
NAMES = ["a", "b"]
TRUTH_BOXES = np.array([[[10, 10, 50, 40], [60, 60, 90, 100]], [[5, 20, 45, 70], [-1] * 4]],
                       "float32")
TRUTH_LABELS = np.array([[0, 1], [1, -1]], "int32")


def _exact():
    return [(TRUTH_BOXES[0], np.array([0.9, 0.8]), TRUTH_LABELS[0]),
            (TRUTH_BOXES[1, :1], np.array([0.7]), TRUTH_LABELS[1, :1])]


@pytest.mark.backend_independent
def test_coco_scores_are_cocoeval_figures():
    perfect = detection.coco_scores(TRUTH_BOXES, TRUTH_LABELS, _exact(), NAMES, 128)
    assert perfect["mAP"] == pytest.approx(1.0) and perfect["AP75"] == pytest.approx(1.0)
    assert "IoU=0.50:0.95" in perfect["summary"]
    assert perfect["per_class_AP"] == pytest.approx({"a": 1.0, "b": 1.0})
    # Each box shifted by a fifth of its width: IoU 0.67 -> found at 0.5, not at 0.75.
    shifted = [(boxes + np.array([1, 0, 1, 0]) * (boxes[:, 2:3] - boxes[:, 0:1]) / 5, s, l)
               for boxes, s, l in _exact()]
    scores = detection.coco_scores(TRUTH_BOXES, TRUTH_LABELS, shifted, NAMES, 128)
    assert scores["AP50"] == pytest.approx(1.0) and scores["AP75"] == pytest.approx(0.0)
    wrong_class = [(b, s, 1 - l) for b, s, l in _exact()]
    assert detection.coco_scores(TRUTH_BOXES, TRUTH_LABELS, wrong_class, NAMES, 128)["AP50"] < 0.5
    empty = [(np.zeros((0, 4)), np.zeros(0), np.zeros(0, int))] * 2
    assert detection.coco_scores(TRUTH_BOXES, TRUTH_LABELS, empty, NAMES, 128)["mAP"] == 0.0


def test_resnet_baseline_encoder_levels_and_cost():
    encoder = detection.resnet_encoder(64)
    levels = encoder(np.zeros((1, 64, 64, 3), "float32"))
    assert {k: tuple(v.shape[1:3]) for k, v in levels.items()} == {
        "P2": (16, 16), "P3": (8, 8), "P4": (4, 4), "P5": (2, 2)}
    cost = profiling.profile(encoder)  # counted through the nested keras-hub model
    assert cost.params == pytest.approx(11.18e6, rel=0.01) and cost.macs > 0
    partial = keras.Model(encoder.inputs, encoder.outputs)
    partial.pyramid_outputs = {k: v for k, v in encoder.pyramid_outputs.items() if k != "P5"}
    with pytest.raises(ValueError, match=r"no pyramid level\(s\) \['P5'\]"):
        detection.retinanet(partial, 2)
    for kwargs, message in [({"num_classes": 0}, "num_classes must be an int >= 1"),
                            ({"head_convs": -1}, "head_convs must be an int >= 0"),
                            ({"confidence_threshold": 1.5}, r"confidence_threshold must be in \[0, 1\]")]:
        with pytest.raises(ValueError, match=message):
            detection.retinanet(encoder, **{"num_classes": 2, **kwargs})


def test_detect_verb_trains_scores_and_the_detector_round_trips(tmp_path):
    out = tmp_path / "hiri.json"
    result = detect_verb.run(detect_verb.parse([
        "--variant", "tiny", "--weights", PRESET, "--image-size", "64", "--train-images", "8",
        "--val-images", "4", "--epochs", "1", "--batch-size", "8", "--json", str(out)]))
    assert json.loads(out.read_text()) == result
    assert result["backbone"] == f"HIRI-ViT-tiny ({PRESET})" and result["backbone_gmacs"] > 0
    for key in ("mAP", "AP50", "AP75"):
        assert 0.0 <= result[key] <= 1.0
    with pytest.raises(ValueError, match=r"multiple of 32 .*Received: 100"):
        detect_verb.run(detect_verb.parse(["--image-size", "100"]))
    with pytest.raises(ValueError, match="--backbone hiri only"):
        detect_verb.run(detect_verb.parse(["--backbone", "resnet", "--weights", PRESET]))

    # The detector (registry backbone, xyxy boxes, low-threshold NMS) through
    # keras-hub's own preset round trip.
    detector = detection.retinanet(detection.hiri_encoder("tiny", 64, weights=PRESET), 3)
    x = np.random.default_rng(0).integers(0, 256, (2, 64, 64, 3)).astype("float32")
    detector.save_to_preset(str(tmp_path / "det"))
    restored = keras_hub.models.ObjectDetector.from_preset(str(tmp_path / "det"))
    out, expected = restored(x), detector(x)
    for key in expected:
        np.testing.assert_allclose(to_numpy(out[key]), to_numpy(expected[key]), atol=1e-5)
    assert restored.prediction_decoder.confidence_threshold == pytest.approx(0.05)


@pytest.mark.backend_independent  # the example's own work: two processes, one table
def test_detect_example_trains_both_backbones_and_prints_ratios(tmp_path, capsys):
    import importlib.util
    import os

    path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                        "examples", "detect.py")
    spec = importlib.util.spec_from_file_location("detect_example", path)
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    rows = example.main(["--results-dir", str(tmp_path), "--variant", "tiny", "--image-size", "64",
                         "--train-images", "8", "--val-images", "4", "--epochs", "1"])
    assert [row["backbone"] for row in rows] == ["HIRI-ViT-tiny", "ResNet-18 (keras-hub)"]
    backend = keras.backend.backend()
    assert sorted(os.listdir(tmp_path)) == [f"detect_hiri_{backend}.json",
                                            f"detect_resnet_{backend}.json"]
    out = capsys.readouterr().out
    assert "HIRI-ViT / ResNet" in out and out.count("ResNet-18 (keras-hub)") == 1
