"""Object detection as in the paper (Sec. 5.2): RetinaNet on HIRI-ViT against
RetinaNet on a ResNet, same data, same steps, scored by COCO's own evaluator.

    python examples/detect.py                 # HIRI-ViT-S and ResNet-18, the defaults of
                                              # `keras-hiri detect`, on the current backend
    python examples/detect.py --epochs 1      # any `keras-hiri detect` option, for both
                                              # (--results-dir DIR: where the JSON goes)

Each detector is trained in its own process by ``keras-hiri detect`` (keras-hub's
``RetinaNetObjectDetector``, FPN P3-P7, both backbones from random
initialisation) on the offline pasted-object set (``keras_hiri.training.data.pasted_objects``)
and scored on held-out images with pycocotools' ``COCOeval``. Prints one table
with both rows and the HIRI-ViT / ResNet ratios, and writes each run's figures
to ``benchmarks/results/detect_<backbone>_<backend>.json``.
"""

import argparse
import json
import os
import subprocess
import sys

import keras

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(ROOT, "benchmarks", "results")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results-dir", default=RESULTS, help="where the JSON files go")
    args, argv = parser.parse_known_args(sys.argv[1:] if argv is None else argv)
    backend = keras.backend.backend()
    os.makedirs(args.results_dir, exist_ok=True)
    rows = []
    for backbone in ("hiri", "resnet"):
        path = os.path.join(args.results_dir, f"detect_{backbone}_{backend}.json")
        command = [sys.executable, "-m", "keras_hiri.cli", "detect", "--backbone", backbone,
                   "--json", path, *argv]
        print("$", " ".join(command[1:]), flush=True)
        subprocess.run(command, check=True, env=dict(os.environ, KERAS_BACKEND=backend))
        with open(path) as f:
            rows.append(json.load(f))
    print(f"\nRetinaNet, {backend}, held-out pasted-object images (COCOeval box AP)")
    print(f"{'backbone':<24}{'params M':>9}{'GMACs':>8}{'mAP':>7}{'AP50':>7}{'AP75':>7}"
          f"{'train s':>9}")
    for row in rows:
        print(f"{row['backbone']:<24}{row['backbone_params_m']:>9.2f}{row['backbone_gmacs']:>8.3f}"
              f"{row['mAP']:>7.3f}{row['AP50']:>7.3f}{row['AP75']:>7.3f}"
              f"{row['train_seconds']:>9.0f}")
    hiri, resnet = rows

    def ratio(key):
        return f"{hiri[key] / resnet[key]:.2f}" if resnet[key] > 0 else "n/a"

    print(f"{'HIRI-ViT / ResNet':<24}{ratio('backbone_params_m'):>9}{ratio('backbone_gmacs'):>8}"
          f"{ratio('mAP'):>7}{ratio('AP50'):>7}{ratio('AP75'):>7}{ratio('train_seconds'):>9}")
    print("(params and GMACs: the backbone alone, per image; the FPN and heads are the same)")
    return rows


if __name__ == "__main__":
    main()
