"""Trains a CNN classifier: python -m cnn.main --config=configs/cnn_seed.py [--workdir=DIR].

--options lists every config option with its value, default and description.
"""

from common.run import cli
from cnn import options
from cnn import train

if __name__ == "__main__":
  cli.run(train.train_and_evaluate, options.OPTIONS)
