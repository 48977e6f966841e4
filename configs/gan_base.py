"""Keys shared by the GAN configs (not a runnable config itself)."""

import ml_collections

from common import loop
from common import optim

PRESETS = ("", "cpu", "test")


def get_config() -> ml_collections.ConfigDict:
  c = loop.base_config()
  c.dataset = "mnist"
  c.batch_size = 64
  c.eval_batch_size = 1000
  c.num_epochs = 25
  c.d_steps = 1                 # discriminator (critic) updates per generator update
  c.g_ema_decay = 0.0           # samples and evaluation use an EMA of G's weights (0: off)
  c.model = ml_collections.ConfigDict(dict(
      arch="dcgan",             # mlp | dcgan | keras_acgan
      latent_dim=100,
      latent_dist="normal",     # normal N(0, 1) | uniform U[-1, 1]
      num_classes=10,
      conditioning="none",      # generator: none | concat (one-hot) | multiply (class embedding)
      d_conditional=False,      # discriminator sees the label (cGAN)
      aux_classifier=False,     # discriminator has an auxiliary class head (ACGAN)
      g_width=64,
      d_width=64,
      g_hidden=1024,            # keras_acgan's first dense layer
      d_norm="batch",           # batch | layer | none (WGAN-GP critics must not use batch)
      d_dropout=0.0,
      init="dcgan",             # dcgan: N(0, 0.02) | default: glorot uniform
  ))
  c.loss = ml_collections.ConfigDict(dict(
      d="minimax",              # minimax | wasserstein
      g="non_saturating",       # minimax | non_saturating | wasserstein
      label_smoothing=0.0,      # one-sided: real targets 1 - label_smoothing
      clip=0.0,                 # WGAN weight clipping c (0: off)
      gp_weight=0.0,            # WGAN-GP lambda (0: off)
      aux_weight_real=0.0,      # ACGAN auxiliary cross-entropy: D on real,
      aux_weight_fake=0.0,      # D on fake,
      aux_weight_g=0.0,         # and G on fake
  ))
  c.g_optimizer = optim.default("adam", learning_rate=2e-4, b1=0.5)
  c.d_optimizer = optim.default("adam", learning_rate=2e-4, b1=0.5)
  c.sample_every_epochs = 1
  c.classifier_workdir = "runs/cnn"   # a cnn run whose classifier gan.evaluate uses
  c.eval_samples = 10000              # samples for evaluation at the end (0: skip it)
  return c


def finish(c: ml_collections.ConfigDict, preset: str) -> ml_collections.ConfigDict:
  """Applies the 'test' preset (a few steps, for the test suite) and rejects unknown presets."""
  if preset not in PRESETS:
    raise ValueError(f"Unknown preset {preset!r}; use one of {', '.join(map(repr, PRESETS))}.")
  if preset == "test":
    c.name += "_test"
    c.num_epochs = 2
    c.train_examples = 640 * c.d_steps
    c.batch_size = 64
    c.eval_samples = 0
    c.model.g_width = min(c.model.g_width, 8)
    c.model.d_width = min(c.model.d_width, 8)
    c.model.g_hidden = 32
  return c
