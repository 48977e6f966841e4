"""Trains a CNN classifier: python -m cnn.main --config=configs/cnn_seed.py [--workdir=DIR].

--keys lists every config key with its value, default and description.
"""

from common.run import cli
from cnn import keys
from cnn import train

if __name__ == "__main__":
  cli.run(train.train_and_evaluate, keys.KEYS)
