"""Train a HIRI-ViT with the paper's recipe (Sec. 5.1), resumable after a crash.

    # the offline photo-patch set (real skimage photographs, see keras_hiri.training.data)
    python examples/train.py --photo-patches --variant tiny --image-size 64 \\
        --epochs 10 --batch-size 32 --output-dir runs/patches
    # a directory of class folders
    python examples/train.py --data-dir /data/train --val-dir /data/val --variant S \\
        --image-size 224 --batch-size 128 --output-dir runs/s224
    # ImageNet through tensorflow-datasets (tar files already in --manual-dir)
    python examples/train.py --tfds imagenet2012 --manual-dir /data/imagenet --variant S ...

Re-running the same command after a crash resumes from the last finished epoch.
All options, the defaults (the paper's recipe) and the multi-device / multi-host
set-up: `python examples/train.py --help` (the same as `keras-hiri train --help`).
"""

from keras_hiri.cli.train import main

if __name__ == "__main__":
    main()
