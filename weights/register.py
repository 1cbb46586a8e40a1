"""Adds or updates a checkpoint in keras_hiri/presets/manifest.json (computing its sha256).

    python weights/register.py NAME FILE --variant tiny --dataset skimage_photo_patches \\
        --resolution 64 --classes 10 --class-names astronaut,brick,... \\
        --val-top1 0.66 --produced-by "KERAS_BACKEND=tensorflow python benchmarks/..."

FILE must sit in keras_hiri/presets/ (package data: it ships in the wheel) unless
--url is given.
"""

import argparse
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from keras_hiri.io.weights import MANIFEST, sha256  # noqa: E402


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("name")
    p.add_argument("file")
    p.add_argument("--variant", required=True)
    p.add_argument("--dataset", required=True)
    p.add_argument("--resolution", type=int, required=True)
    p.add_argument("--classes", type=int, required=True)
    p.add_argument("--class-names", default=None)
    p.add_argument("--url", default=None)
    p.add_argument("--val-top1", type=float, default=None)
    p.add_argument("--produced-by", default=None)
    args = p.parse_args(argv)
    if args.name == "imagenet":
        p.error("'imagenet' is reserved: no ImageNet-trained checkpoint exists")
    manifest = {"weights": {}}
    if os.path.exists(MANIFEST):
        with open(MANIFEST) as f:
            manifest = json.load(f)
    entry = {
        "variant": args.variant, "dataset": args.dataset, "resolution": args.resolution,
        "classes": args.classes, "include_top": True, "file": os.path.basename(args.file),
        "url": args.url, "sha256": sha256(args.file),
    }
    if args.class_names:
        entry["class_names"] = args.class_names.split(",")
    if args.val_top1 is not None:
        entry["val_top1"] = args.val_top1
    if args.produced_by:
        entry["produced_by"] = args.produced_by
    manifest["weights"][args.name] = entry
    with open(MANIFEST, "w") as f:
        json.dump(manifest, f, indent=1)
        f.write("\n")
    print(json.dumps(entry, indent=1))


if __name__ == "__main__":
    main()
