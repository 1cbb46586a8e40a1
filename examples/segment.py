"""Semantic segmentation with HIRI-ViT + Semantic FPN on offline texture mosaics.

    python examples/segment.py                      # tiny HIRI-ViT, 64x64, the defaults below
    python examples/segment.py --weights none       # the same from random initialisation

Trains ``keras_hiri.tasks.segmentation.HiriViTSegmenter`` (Semantic FPN over P2-P5)
on mosaics of the real textures scikit-image ships (brick, grass, gravel; exact
masks, see ``keras_hiri.training.data.texture_mosaics``) and scores held-out mosaics,
cut from texture regions the training never saw, with ``keras.metrics.MeanIoU``.
By default the backbone starts from the registry checkpoint
``tiny_skimage_patches_64`` (trained on photo patches from the same left part
of the photographs, never the validation part). Prints per-class IoU and mIoU.
"""

import argparse
import json
import time

import keras
import numpy as np

import keras_hiri
from keras_hiri.training import data
from keras_hiri.training.state import build_optimizer
from keras_hiri.tasks.segmentation import HiriViTSegmenter


def parse(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--variant", default="tiny")
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--train-images", type=int, default=512)
    p.add_argument("--val-images", type=int, default=128)
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--learning-rate", type=float, default=1e-3)
    p.add_argument("--weights", default="tiny_skimage_patches_64",
                   help="registry name or .weights.h5 for the backbone; 'none' for random init")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", help="also write the figures to this file")
    return p.parse_args(argv)


def mean_iou(model, images, masks, num_classes, batch_size):
    metric = keras.metrics.MeanIoU(num_classes, sparse_y_pred=False)
    for start in range(0, len(images), batch_size):
        logits = model.predict_on_batch(images[start:start + batch_size].astype("float32"))
        metric.update_state(masks[start:start + batch_size], logits)
    matrix = keras.ops.convert_to_numpy(metric.total_cm).astype(np.float64)
    per_class = np.diag(matrix) / (matrix.sum(0) + matrix.sum(1) - np.diag(matrix))
    return float(keras.ops.convert_to_numpy(metric.result())), per_class.tolist()


def main(argv=None):
    args = parse(argv)
    keras.utils.set_random_seed(args.seed)
    x, y, names = data.texture_mosaics("train", n=args.train_images, size=args.size, seed=args.seed)
    xv, yv, _ = data.texture_mosaics("validation", n=args.val_images, size=args.size,
                                     seed=args.seed)
    weights = None if args.weights == "none" else args.weights
    backbone = keras_hiri.HiriViT(args.variant, include_top=False, weights=weights,
                                  input_shape=(args.size, args.size, 3))
    model = HiriViTSegmenter(backbone, len(names))
    model.compile(
        optimizer=keras.optimizers.AdamW(args.learning_rate, weight_decay=0.05),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    build_optimizer(model)  # TensorFlow then traces the train step once, not twice
    start = time.time()
    model.fit(x.astype("float32"), y, batch_size=args.batch_size, epochs=args.epochs,
              shuffle=True, verbose=2)
    seconds = time.time() - start
    miou, per_class = mean_iou(model, xv, yv, len(names), args.batch_size)
    print(f"\nbackend {keras.backend.backend()}, HIRI-ViT-{args.variant} + Semantic FPN, "
          f"{args.size}x{args.size}, weights={args.weights}, {args.epochs} epochs of "
          f"{args.train_images} mosaics ({seconds:.0f} s)")
    print(f"{'class':>8} {'IoU':>6}")
    for name, iou in zip(names, per_class):
        print(f"{name:>8} {iou:6.3f}")
    print(f"{'mIoU':>8} {miou:6.3f}   (keras.metrics.MeanIoU, {args.val_images} held-out mosaics)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"backend": keras.backend.backend(), "args": vars(args), "miou": miou,
                       "per_class_iou": dict(zip(names, per_class)), "train_seconds": seconds},
                      f, indent=1)
    return miou


if __name__ == "__main__":
    main()
