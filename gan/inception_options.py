"""The Inception metrics' config options (gan/options.py adds them to the GANs'); imports no JAX."""

import os

from common import config as cfg
from common.config import Option

ENV = "INCEPTION_WEIGHTS"  # a machine-wide copy of the weights file
RESIZES = ("pytorch_fid", "clean")  # gan.inception.RESIZES: how images reach 299x299
SPLITS = ("train", "test")

OPTIONS: cfg.Options = {
    "inception_weights": Option("", cfg.TEXT, "pytorch-fid's pt_inception-2015-12-05-6726825d.pth "
                             "for the Inception FID, IS and KID ('': $INCEPTION_WEIGHTS, or none)",
                             resumable=True),
    "inception_resize": Option("pytorch_fid", cfg.choice(*RESIZES),
                            "resizing to 299x299: pytorch_fid (bilinear) or clean (bicubic, "
                            "antialiased, as clean-fid)", resumable=True),
    "inception_batch_size": Option(100, cfg.integer(1), "images per Inception pass, split over "
                                "every device", resumable=True),
    "inception_reference_split": Option("train", cfg.choice(*SPLITS),
                                     "real images that samples are compared with; the `real` "
                                     "values are the other split's", resumable=True),
    "inception_reference_samples": Option(0, cfg.integer(0), "images of the reference split "
                                       "(0: all)", resumable=True),
    "inception_reference_stats": Option("", cfg.TEXT, "a pytorch-fid .npz (mu, sigma) replacing "
                                     "the reference's own statistics for the FID",
                                     resumable=True),
    "train_inception_samples": Option(0, cfg.integer(0), "samples for eval_inception_fid every "
                                   "eval_every_epochs while training (0: off)", resumable=True),
}


def weights_path(config) -> str:
  """config.inception_weights, else $INCEPTION_WEIGHTS, else '' (no Inception metrics)."""
  return os.path.expanduser(config.inception_weights or os.environ.get(ENV, ""))


def validate(config) -> None:
  if config.train_inception_samples and not weights_path(config):
    raise cfg.ConfigError("config.train_inception_samples > 0 needs Inception weights: pass "
                          "--config.inception_weights=PATH or set $INCEPTION_WEIGHTS.")
  if 0 < config.train_inception_samples < 2:
    raise cfg.ConfigError("config.train_inception_samples needs at least 2 samples for a "
                          "covariance (2048 or more for a full-rank FID).")
