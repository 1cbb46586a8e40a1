"""``keras-hiri detect``: train keras-hub's RetinaNet on a HIRI-ViT (or, for
comparison, a ResNet) backbone on the offline pasted-object set and score the
held-out images with pycocotools' ``COCOeval``.

    keras-hiri detect --backbone hiri --variant S          # the defaults below
    keras-hiri detect --backbone resnet --json resnet.json

Needs ``pip install "keras-hiri[detect]"``. The data (``keras_hiri.training.data.pasted_objects``:
a cat, a cup, a rocket and faces pasted onto real photographs, exact boxes) is
built offline from photographs that scikit-image ships.
"""

import argparse
import json
import time
import warnings

from keras_hiri.cli import VERBS


def parse(argv=None):
    p = argparse.ArgumentParser(prog="keras-hiri detect", description=VERBS["detect"],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--backbone", choices=("hiri", "resnet"), default="hiri",
                   help="HIRI-ViT, or keras-hub's ResNet-18 (basic blocks) as the baseline")
    p.add_argument("--variant", default="S", help="HIRI-ViT variant (--backbone hiri)")
    p.add_argument("--weights", default=None,
                   help="HIRI-ViT backbone weights: registry name or HiriViTBackbone preset directory "
                        "(default: random)")
    p.add_argument("--image-size", type=int, default=128)
    p.add_argument("--train-images", type=int, default=640)
    p.add_argument("--val-images", type=int, default=160)
    p.add_argument("--epochs", type=int, default=6)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--learning-rate", type=float, default=1e-3,
                   help="AdamW peak rate (cosine decay to 0 over the run)")
    p.add_argument("--head-convs", type=int, default=2,
                   help="convolutions before each RetinaNet head's output (RetinaNet's own: 4)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", help="also write the figures to this file")
    return p.parse_args(argv)


def _check(args):
    """The verb's own argument rules, as ``ValueError`` naming the value."""
    if args.image_size % 32:
        raise ValueError(f"--image-size must be a multiple of 32 (RetinaNet's P5 stride). "
                         f"Received: {args.image_size}")
    if args.weights and args.backbone != "hiri":
        raise ValueError("--weights applies to --backbone hiri only (the ResNet starts "
                         f"from random initialisation). Received: {args.weights!r}")


def _report(label, args, train_images, seconds, cost, scores):
    """Prints the run's figures and COCOeval's table."""
    import keras

    print(f"\nbackend {keras.backend.backend()}, RetinaNet on {label}, "
          f"{args.image_size}x{args.image_size}, {args.epochs} epochs of {train_images} images "
          f"({seconds:.0f} s); backbone {cost.params_m:.2f} M params, {cost.gmacs:.3f} GMACs")
    print(scores["summary"])
    print("AP per class: " + ", ".join(f"{name} {ap:.3f}" for name, ap in
                                       scores["per_class_AP"].items()))


def run(args):
    """Trains and scores one detector; returns the figures as a dict."""
    import keras
    import numpy as np

    from keras_hiri import profiling
    from keras_hiri.tasks import detection
    from keras_hiri.training import data
    from keras_hiri.training.state import build_training_state

    _check(args)
    keras.utils.set_random_seed(args.seed)
    x, boxes, labels, names = data.pasted_objects(
        "train", n=args.train_images, size=args.image_size, seed=args.seed)
    xv, boxes_v, labels_v, _ = data.pasted_objects(
        "validation", n=args.val_images, size=args.image_size, seed=args.seed)
    if args.backbone == "hiri":
        encoder = detection.hiri_encoder(args.variant, args.image_size, weights=args.weights)
        label = f"HIRI-ViT-{args.variant}" + (f" ({args.weights})" if args.weights else "")
    else:
        encoder = detection.resnet_encoder(args.image_size)
        label = "ResNet-18 (keras-hub)"
    cost = profiling.profile(encoder)
    detector = detection.retinanet(encoder, len(names), head_convs=args.head_convs)
    steps = args.epochs * (len(x) // args.batch_size)
    detector.compile(optimizer=keras.optimizers.AdamW(
        keras.optimizers.schedules.CosineDecay(args.learning_rate, steps), weight_decay=0.05,
        clipnorm=10.0))
    # TensorFlow then traces the train step once, not twice (a one-batch copy of
    # the pipeline: iterating the training one would move its shuffle on).
    first = detection.train_dataset(x[:args.batch_size], boxes[:args.batch_size],
                                    labels[:args.batch_size], args.batch_size, args.seed)
    build_training_state(detector, next(iter(first)))
    start = time.time()
    # keras-hub's task fit passes shuffle=True along with our (shuffled) tf.data
    # pipeline, and Keras warns that it is ignored: true, and beside the point.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="`shuffle=True` was passed")
        detector.fit(detection.train_dataset(x, boxes, labels, args.batch_size, args.seed),
                     epochs=args.epochs, verbose=2)
    seconds = time.time() - start
    scores = detection.evaluate(detector, xv, boxes_v, labels_v, names, args.batch_size)
    _report(label, args, len(x), seconds, cost, scores)
    result = {
        "backend": keras.backend.backend(), "backbone": label, "args": vars(args),
        "backbone_params_m": cost.params_m, "backbone_gmacs": cost.gmacs,
        "detector_params_m": float(sum(np.prod(w.shape) for w in detector.trainable_weights)) / 1e6,
        "train_seconds": seconds,
        **{key: value for key, value in scores.items() if key != "summary"},
    }
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)
    return result


def main(argv=None):
    run(parse(argv))
