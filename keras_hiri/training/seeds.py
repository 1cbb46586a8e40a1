"""Random draws keyed by the training step, so a resumed run draws exactly
what the uninterrupted one did.

A ``keras.random.SeedGenerator`` advances its state on every draw, and that
state is not part of a checkpoint. :class:`StepSeeds` sets each generator's
state to ``(seed_i, step * DRAWS_PER_STEP)`` before a step, so every draw of
the step is a function of the seed and the checkpointed step counter.
"""

from keras import ops

# Seeds one step may draw from each generator before two steps' keys meet.
DRAWS_PER_STEP = 16


class StepSeeds:
    """Keys ``generators`` (``SeedGenerator`` objects) by ``(seed, step)``.

    Generator ``i`` gets the seed ``(seed + 7919 i) mod 2**31``, so two
    generators never share a stream.
    """

    def __init__(self, seed, generators):
        self.seed = int(seed)
        self.generators = list(generators)

    def key(self, step):
        """Sets every generator's state for optimizer step ``step`` (a scalar tensor)."""
        counter = step * DRAWS_PER_STEP
        for i, generator in enumerate(self.generators):
            base = ops.convert_to_tensor((self.seed + i * 7919) % 2**31, "int32")
            generator.state.assign(ops.cast(ops.stack([base, counter]), generator.state.dtype))


def zero_after(tensor):
    """An int32 zero that a graph can only compute once ``tensor`` exists:
    ``min(number of NaNs in its first value, 0)``, which no graph optimizer
    folds to a constant. Added to a counter's update, it makes the update wait
    for the batch: in a TensorFlow graph a variable update that does not
    depend on the batch runs even when reading the batch fails, as Keras'
    TensorFlow trainer's last read of an epoch of unknown length does."""
    first = ops.reshape(tensor, (-1,))[:1]
    return ops.minimum(ops.sum(ops.cast(ops.isnan(ops.cast(first, "float32")), "int32")), 0)
