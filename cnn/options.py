"""The CNN's config options (each declared once) and their validation; imports no JAX."""

from common import config as cfg
from common import options as common_keys
from common.config import Option

MODELS = ("seed", "vgg", "lenet")  # cnn.models.MODELS builds each

OPTIONS: cfg.Options = {
    **common_keys.RUN,
    **common_keys.optimizer("optimizer"),
    "model.name": Option("seed", cfg.choice(*MODELS),
                      "seed: the course's Keras CNN; vgg: conv-BN-ReLU pairs; lenet: 5x5 convs"),
    "model.widths": Option((32, 64), cfg.INTS, "vgg, lenet: convolution widths, one per stage"),
    "model.hidden": Option(128, cfg.integer(1), "vgg, lenet: width of the dense head"),
    "model.dropout": Option(0.5, cfg.number(0.0, 1.0, open_hi=True),
                         "vgg, lenet: dropout before the last layer"),
    "augment_shift": Option(0, cfg.integer(0, 8),
                         "random translations of up to this many pixels while training"),
    "augment_flip": Option(False, cfg.FLAG, "random horizontal flips while training (not for "
                        "digits: clothing, natural images)"),
}
RETIRED = ("model.ndim",)  # options of older runs that no longer exist (ndim: the data's rank)


def get_config():
  """Every CNN key at its default: what a CNN config file starts from."""
  return cfg.defaults(OPTIONS)


def validate(config) -> None:
  cfg.validate(config, OPTIONS)
