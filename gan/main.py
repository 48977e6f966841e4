"""Trains a GAN variant: python -m gan.main --config=configs/acgan.py [--workdir=DIR]."""

from common import cli
from gan import train

if __name__ == "__main__":
  cli.run(train.train_and_evaluate)
