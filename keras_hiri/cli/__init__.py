"""``keras-hiri`` verbs, one module each (``predict``, ``profile``, ``train``,
``export``, ``convert``, ``detect``), each with ``main(argv)``.

The verb table and the dispatcher live in the top-level module
``keras_hiri_cli`` (re-exported here), so that ``keras-hiri --help`` answers
without importing Keras; see its docstring.
"""

from keras_hiri_cli import VERBS, main

__all__ = ["VERBS", "main"]
