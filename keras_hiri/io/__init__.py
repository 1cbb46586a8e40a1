"""Weights in and out: the hash-checked registry (:mod:`~keras_hiri.io.weights`),
PyTorch checkpoint conversion (:mod:`~keras_hiri.io.conversion`) and serving
export (:mod:`~keras_hiri.io.serving`)."""
