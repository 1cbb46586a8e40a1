"""Convert a PyTorch HIRI-ViT state_dict into Keras weights, and verify it.

    python weights/convert_pytorch.py model.pth --variant S --image-size 448 \\
        --classes 1000 --output hiri_vit_s.weights.h5 [--reference ref.npz]

The state_dict (``torch.load(..., weights_only=True)`` or ``.safetensors``) must
use the timm-style names documented in ``keras_hiri/io/conversion.py``. Every
tensor must be used exactly once with the right shape, and every Keras weight
filled, or nothing is written. Checks run on the converted model:

* round trip: the Keras weights, written back in PyTorch layout, equal the
  input tensors bit for bit;
* with ``--reference`` (an ``.npz`` with ``images`` (N, H, W, 3) in [0, 255]
  and the PyTorch model's ``logits`` for them): max |logits diff| <= --atol.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from keras_hiri.cli.convert import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
