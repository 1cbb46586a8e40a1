"""Train a HIRI-ViT with the paper's recipe (Sec. 5.1), resumable after a crash.

    # the offline photo-patch set (real skimage photographs, see keras_hiri.data)
    python examples/train.py --photo-patches --variant tiny --image-size 64 \\
        --epochs 10 --batch-size 32 --output-dir runs/patches
    # a directory of class folders
    python examples/train.py --data-dir /data/train --val-dir /data/val --variant S \\
        --image-size 224 --batch-size 128 --output-dir runs/s224
    # ImageNet through tensorflow-datasets (tar files already in --manual-dir)
    python examples/train.py --tfds imagenet2012 --manual-dir /data/imagenet --variant S ...

Re-running the same command after a crash resumes from the last finished epoch
(keras.callbacks.BackupAndRestore in OUTPUT_DIR/backup). Defaults are the
paper's: AdamW, lr 1e-3 x batch/1024, weight decay 0.05, cosine with 5 warm-up
epochs, 300 epochs, EMA distillation on (--no-distillation for plain training).

Multi-device: on JAX, --data-parallel uses keras.distribution.DataParallel over
all devices. For several hosts run the same command on every host with
KERAS_DISTRIBUTION_JOB_ADDRESSES="host0:1234,host1:1234",
KERAS_DISTRIBUTION_NUM_PROCESSES=2 and KERAS_DISTRIBUTION_PROCESS_ID=0 / 1 set;
keras.distribution.initialize() then joins them before DataParallel. On TensorFlow, --data-parallel wraps the
build and fit in tf.distribute.MirroredStrategy (one host, all GPUs); for
several hosts use MultiWorkerMirroredStrategy with TF_CONFIG set on each host.
"""

from keras_hiri.training import main

if __name__ == "__main__":
    main()
