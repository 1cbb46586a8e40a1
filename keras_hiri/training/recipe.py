"""The paper's training recipe (Sec. 5.1) as numbers: optimizer, schedule,
distillation and augmentation settings. Needs no TensorFlow.

Sec. 5.1 follows Swin / PVTv2 (DeiT's recipe): random resized crop,
horizontal flip, RandAugment, Random Erasing, CutMix, MixUp and label
smoothing; :data:`DEFAULTS` holds the DeiT / timm values of those.
"""

import dataclasses

import keras

from keras_hiri import checks
from keras_hiri.training.optimizer import LayerDecayAdamW, layer_decay_multipliers

# DeiT / timm defaults used by Swin and PVTv2 (the recipes Sec. 5.1 cites).
DEFAULTS = {
    "scale": (0.08, 1.0),
    "ratio": (3.0 / 4.0, 4.0 / 3.0),
    "randaugment_ops": 2,
    "randaugment_factor": 0.5,  # Keras' scale for timm's "rand-m9-mstd0.5"
    "erasing_prob": 0.25,
    "mixup_alpha": 0.8,
    "cutmix_alpha": 1.0,
    "switch_prob": 0.5,
    "label_smoothing": 0.1,
    "crop_pct": 0.875,
}


# Recipe fields that are probabilities or fractions: the open upper end where 1 makes no sense.
_UNIT_INTERVALS = {"alpha": False, "erasing_prob": False, "ema_momentum": True, "label_smoothing": True,
                   "drop_path_rate": True}


@dataclasses.dataclass
class Recipe:
    """Training hyper-parameters; the defaults are the paper's (Sec. 5.1)."""

    epochs: int = 300
    batch_size: int = 1024
    base_learning_rate: float = 1e-3
    base_batch_size: int = 1024
    weight_decay: float = 0.05
    warmup_epochs: int = 5
    min_learning_rate: float = 1e-5
    distillation: bool = True
    alpha: float = 0.5
    ema_momentum: float = 0.9999
    mixup_alpha: float = 0.8
    cutmix_alpha: float = 1.0
    label_smoothing: float = 0.1
    drop_path_rate: float = 0.1
    randaugment: bool = True
    erasing_prob: float = 0.25
    seed: int = 0
    layer_decay: float = 1.0

    def __post_init__(self):
        """Raises a ``ValueError`` naming the first field out of its range."""
        for field in dataclasses.fields(self):
            name, value = f"Recipe.{field.name}", getattr(self, field.name)
            if field.type is bool:
                checks.flag(name, value)
            elif field.type is int:
                checks.int_at_least(name, value, 0 if field.name in ("warmup_epochs", "seed") else 1)
            elif field.name == "layer_decay":  # 1: off; BEiT fine-tunes with 0.65-0.75
                checks.number_in(name, value, 0, 1, low_open=True)
            elif field.name in _UNIT_INTERVALS:
                checks.number_in(name, value, 0, 1, high_open=_UNIT_INTERVALS[field.name])
            else:  # rates, decays and Beta parameters: >= 0; the learning rate > 0
                checks.number_in(name, value, low_open=field.name == "base_learning_rate")

    @property
    def learning_rate(self):
        """Peak learning rate, linearly scaled: ``base * batch / base_batch``."""
        return self.base_learning_rate * self.batch_size / self.base_batch_size

    def schedule(self, steps_per_epoch):
        """The learning rate per step: linear warm-up from 0 to
        :attr:`learning_rate` over ``warmup_epochs``, then cosine decay to
        ``min_learning_rate`` at the end of ``epochs``."""
        total = max(1, self.epochs * steps_per_epoch)
        warmup = min(self.warmup_epochs * steps_per_epoch, total - 1)
        return keras.optimizers.schedules.CosineDecay(
            initial_learning_rate=0.0,
            decay_steps=max(1, total - warmup),
            alpha=self.min_learning_rate / self.learning_rate,
            warmup_target=self.learning_rate,
            warmup_steps=warmup,
        )

    def optimizer(self, steps_per_epoch, model=None):
        """AdamW on :meth:`schedule` with ``weight_decay``, biases and norm
        scales/offsets left out of the decay. With ``layer_decay < 1``, a
        :class:`~keras_hiri.training.optimizer.LayerDecayAdamW` whose rates
        decay from ``model``'s head to its stem (``model``: the HIRI-ViT)."""
        if self.layer_decay < 1:
            if model is None:
                raise ValueError("Recipe.optimizer needs the model when layer_decay < 1 (its layers get "
                                 f"their own rates). Received: layer_decay={self.layer_decay}, model=None")
            return LayerDecayAdamW(self.schedule(steps_per_epoch), self.weight_decay,
                                   layer_decay_multipliers(model, self.layer_decay))
        opt = keras.optimizers.AdamW(
            learning_rate=self.schedule(steps_per_epoch), weight_decay=self.weight_decay
        )
        opt.exclude_from_weight_decay(var_names=["bias", "gamma", "beta"])
        return opt
