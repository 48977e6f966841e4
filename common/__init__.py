"""What the CNN and the GANs share: data, parallelism, the loop, checkpoints, logging, plots."""

import os

# TensorFlow is imported (by TFDS, and by etils for file paths) only to read datasets: keep its
# start-up logging quiet. Set here because this package is imported before either.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")

from common.nn import fast_rng  # pylint: disable=g-import-not-at-top,wrong-import-position

fast_rng.use_unrolled_threefry()
