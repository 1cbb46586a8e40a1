"""Training state created before the first step, so a compiled step traces once."""

import keras


def build_optimizer(model, metric_shape=None):
    """Creates ``model.optimizer``'s slot variables for the trainable weights
    (and, given ``metric_shape``, the compiled metrics' state for predictions
    and targets of that shape).

    Call it after ``compile`` and before the first ``fit``. Without it, Keras'
    TensorFlow trainer (no distribution strategy) creates them inside the
    first trace of the train step, and ``tf.function`` then traces the step
    twice, once creating variables and once without: the first ``fit`` of a
    tiny HIRI-ViT segmenter took 44 s that way and 20 s with this
    (docs/DESIGN.md). The JAX and PyTorch trainers create them before their
    first step anyway; there it changes nothing.
    """
    if model.optimizer is not None and not model.optimizer.built:
        model.optimizer.build(model.trainable_variables)
    if metric_shape is not None:
        spec = keras.KerasTensor(metric_shape)
        for metric in model.metrics:  # the compiled-metrics container is built lazily
            if getattr(metric, "built", True) is False:
                metric.build(spec, spec)


def build_training_state(model, batch):
    """:func:`build_optimizer`, and the compiled loss's state from one batch.

    A model compiled with a loss per output (keras-hub's RetinaNet: box and
    class losses) gets one loss tracker per output, created when the compiled
    loss first runs: on TensorFlow inside the first trace of the train step,
    which ``tf.function`` then traces twice, like the optimizer's slots. One
    eager ``compute_loss`` on ``batch`` (``(x, y)``, inference-mode forward, no
    update of weights or random state) creates them now; ``fit`` resets the
    trackers when its first epoch begins. Measured on the detect verb's tiny
    RetinaNet (docs/DESIGN.md): the first ``fit`` traced its step twice and
    took 15.8 s; with this, once and 8.5 s (+0.7 s for this call). The JAX
    and PyTorch trainers create that state before their first step anyway, and
    there the eager pass only costs time (JAX: the detect verb's test 50 -> 58 s),
    so on those backends only the optimizer is built.
    """
    build_optimizer(model)
    if keras.backend.backend() == "tensorflow":
        x, y = batch[0], batch[1]
        model.compute_loss(x, y, model(x, training=False), None)
