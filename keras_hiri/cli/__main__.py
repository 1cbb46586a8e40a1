"""``python -m keras_hiri.cli``: the ``keras-hiri`` command."""

import sys

from keras_hiri.cli import main

sys.exit(main())
