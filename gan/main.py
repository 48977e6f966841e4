"""Trains a GAN variant: python -m gan.main --config=configs/acgan.py [--workdir=DIR].

--options lists every config option with its value, default and description.
"""

from common.run import cli
from gan import options
from gan import train

if __name__ == "__main__":
  cli.run(train.train_and_evaluate, options.OPTIONS)
