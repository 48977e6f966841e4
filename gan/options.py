"""The GANs' config options (each declared once) and their validation; imports no JAX."""

import dataclasses

from common import config as cfg
from common import options as common_keys
from common.config import Option
from gan import inception_options
from gan import toolkit_options

ARCHS = ("mlp", "dcgan", "keras_acgan", "resnet")  # gan.models.ARCHITECTURES builds each
# How a conditional model sees the label: the generator concatenates a one-hot vector to z
# ('concat') or multiplies z by a learned class embedding ('multiply', the Keras ACGAN); 'cbn': only
# through the ResNet generator's conditional batch norm (which every conditional ResNet G has).
CONDITIONING = ("none", "concat", "multiply", "cbn")
NORMS = ("batch", "layer", "none")
INITS = ("default", "dcgan", "he")
D_LOSSES = ("minimax", "wasserstein", "hinge")
G_LOSSES = ("minimax", "non_saturating", "wasserstein", "hinge")

_RUN = dict(common_keys.RUN, **{
    k: dataclasses.replace(common_keys.RUN[k], default=v)
    for k, v in dict(batch_size=64, num_epochs=25).items()})

OPTIONS: cfg.Options = {
    **_RUN,
    **common_keys.optimizer("g_optimizer", "adam", 2e-4, b1=0.5),
    **common_keys.optimizer("d_optimizer", "adam", 2e-4, b1=0.5),
    "model.arch": Option("dcgan", cfg.choice(*ARCHS), "mlp, dcgan, keras_acgan (the course's) or "
                      "resnet (SNGAN's)"),
    "model.latent_dim": Option(100, cfg.integer(1), "size of z"),
    "model.latent_dist": Option("normal", cfg.choice("uniform", "normal"), "z ~ N(0, 1) or U[-1, 1]"),
    "model.conditioning": Option("none", cfg.choice(*CONDITIONING),
                              "generator sees the label: none, concat (one-hot), multiply "
                              "(class embedding), cbn (resnet's conditional batch norm only)"),
    "model.d_conditional": Option(False, cfg.FLAG, "discriminator sees the label (cGAN)"),
    "model.aux_classifier": Option(False, cfg.FLAG, "discriminator has a class head (ACGAN)"),
    "model.g_width": Option(64, cfg.integer(1), "generator width"),
    "model.d_width": Option(64, cfg.integer(1), "discriminator width"),
    "model.g_hidden": Option(1024, cfg.integer(1), "keras_acgan: first dense layer of G"),
    "model.d_norm": Option("batch", cfg.choice(*NORMS),
                        "discriminator normalization (WGAN-GP critics: not batch)"),
    "model.d_dropout": Option(0.0, cfg.number(0.0, 1.0, open_hi=True), "discriminator dropout"),
    "model.init": Option("dcgan", cfg.choice(*INITS),
                      "kernel init: dcgan N(0, 0.02), he, or default (glorot uniform)"),
    "loss.d": Option("minimax", cfg.choice(*D_LOSSES), "discriminator (critic) loss"),
    "loss.g": Option("non_saturating", cfg.choice(*G_LOSSES), "generator loss"),
    "loss.label_smoothing": Option(0.0, cfg.number(0.0, 0.5),
                                "one-sided: real targets are 1 - label_smoothing"),
    "loss.clip": Option(0.0, cfg.number(0.0), "WGAN weight clipping c (0: off)"),
    "loss.gp_weight": Option(0.0, cfg.number(0.0), "WGAN-GP lambda (0: off)"),
    "loss.aux_weight_real": Option(0.0, cfg.number(0.0), "ACGAN class loss: D on real images"),
    "loss.aux_weight_fake": Option(0.0, cfg.number(0.0), "ACGAN class loss: D on generated images"),
    "loss.aux_weight_g": Option(0.0, cfg.number(0.0), "ACGAN class loss: G"),
    "d_steps": Option(1, cfg.integer(1), "discriminator (critic) updates per generator update"),
    "g_ema_decay": Option(0.0, cfg.number(0.0, 1.0, open_hi=True),
                       "samples and evaluation use an EMA of G's weights (0: off)"),
    "sample_every_epochs": Option(1, cfg.integer(1), "epochs between sample grids", resumable=True),
    "classifier_workdir": Option("runs/cnn", cfg.TEXT, "a cnn run on the same dataset whose "
                              "classifier evaluates samples", resumable=True),
    "eval_samples": Option(10000, cfg.integer(0), "samples for evaluation at the end (0: skip it)"),
    "train_eval_samples": Option(1000, cfg.integer(0), "samples for the evaluation every "
                              "eval_every_epochs while training (0: off; needs the classifier)",
                              resumable=True),
    "cas_epochs": Option(5, cfg.integer(1), "epochs of the classification accuracy score's "
                      "classifier (conditional models)"),
    **inception_options.OPTIONS,
    **toolkit_options.OPTIONS,
}
RETIRED = ("model.num_classes",)  # now read from the dataset


def get_config():
  """Every GAN key at its default: what a GAN config file starts from."""
  return cfg.defaults(OPTIONS)


def validate(config) -> None:
  """Each key's rule, then combinations that per-key rules can't see."""
  cfg.validate(config, OPTIONS)
  inception_options.validate(config)
  m, l = config.model, config.loss
  if l.gp_weight > 0 and m.d_norm == "batch":
    raise cfg.ConfigError("config.loss.gp_weight > 0 needs a critic without batch norm: set "
                          "config.model.d_norm to 'layer' or 'none'.")
  if (l.d == "wasserstein") != (l.g == "wasserstein"):
    raise cfg.ConfigError(f"config.loss.d={l.d!r} and config.loss.g={l.g!r} don't match: use "
                          "'wasserstein' for both or for neither.")
  if m.aux_classifier != (l.aux_weight_real + l.aux_weight_fake + l.aux_weight_g > 0):
    raise cfg.ConfigError("config.model.aux_classifier needs some config.loss.aux_weight_* > 0, "
                          "and aux weights need config.model.aux_classifier=True.")
  toolkit_options.validate(config)
  if (m.d_conditional or m.aux_classifier) and m.conditioning == "none":
    raise cfg.ConfigError("A conditional discriminator or auxiliary classifier needs a conditional "
                          "generator: set config.model.conditioning to 'concat' or 'multiply'.")


def conditional(config) -> bool:
  return config.model.conditioning != "none"
