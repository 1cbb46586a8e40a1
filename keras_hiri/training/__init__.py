"""Training: the paper's recipe (:mod:`~keras_hiri.training.recipe`), its inputs
(:mod:`~keras_hiri.training.pipeline` for arrays, :mod:`~keras_hiri.training.data`
and :mod:`~keras_hiri.training.augmentation` for streaming sources,
:mod:`~keras_hiri.training.randaugment`, :mod:`~keras_hiri.training.mixing`), the EMA
teacher (:mod:`~keras_hiri.training.ema`), the distillation trainer
(:mod:`~keras_hiri.training.distillation`) and the resumable run
(:mod:`~keras_hiri.training.run`)."""

from keras_hiri.training.run import train  # noqa: E402  (was keras_hiri.training.train)

__all__ = ["train"]
