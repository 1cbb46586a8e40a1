"""``keras-hiri convert``: a PyTorch state_dict (timm-style names) into .weights.h5, verified."""

import argparse

import numpy as np

from keras_hiri.cli import VERBS
from keras_hiri.io.conversion import load_state_dict, read_state_dict, to_state_dict


def main(argv=None):
    p = argparse.ArgumentParser(prog="keras-hiri convert", description=VERBS["convert"])
    p.add_argument("state_dict", help=".pt/.pth/.bin (torch.load) or .safetensors")
    p.add_argument("--variant", default="S", help="S, B, L or tiny")
    p.add_argument("--image-size", type=int, default=448)
    p.add_argument("--classes", type=int, default=1000)
    p.add_argument("--output", required=True, help="a .weights.h5 path")
    p.add_argument("--reference", help=".npz with 'images' and the PyTorch 'logits'")
    p.add_argument("--atol", type=float, default=1e-4)
    args = p.parse_args(argv)
    if not args.output.endswith(".weights.h5"):
        p.error("--output must end in .weights.h5")

    import keras

    from keras_hiri import HiriViT

    state = read_state_dict(args.state_dict)
    model = HiriViT(args.variant, input_shape=(args.image_size, args.image_size, 3),
                    classes=args.classes, classifier_activation=None)
    load_state_dict(model, state)
    back = to_state_dict(model)
    for key, value in back.items():
        original = state[key]
        original = original.detach().cpu().numpy() if hasattr(original, "detach") else np.asarray(original)
        if original.shape != value.shape and value.ndim == 2 and original.ndim == 4:
            original = original[:, :, 0, 0]
        if not np.array_equal(original, value):
            raise SystemExit(f"round trip changed tensor {key}")
    print(f"converted {len(back)} tensors; round trip exact")
    if args.reference:
        ref = np.load(args.reference)
        logits = keras.ops.convert_to_numpy(model(ref["images"].astype("float32"), training=False))
        diff = float(np.abs(logits - ref["logits"]).max())
        print(f"max |logits - reference| = {diff:.3g} (atol {args.atol})")
        if diff > args.atol:
            raise SystemExit(f"outputs differ from the reference by {diff:.3g} > {args.atol}")
    model.save_weights(args.output)
    print("wrote", args.output)
    return 0
