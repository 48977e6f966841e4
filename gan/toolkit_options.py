"""The modern GAN toolkit's config options (spectral norm, projection, DiffAugment, LeCam), each
declared once, and the combinations they refuse; gan.options merges them. Imports no JAX."""

from common import config as cfg
from common.config import Option

SPECTRAL_NORM = ("none", "d", "g_and_d")
AUGMENTS = ("color", "translation", "cutout")  # gan.augment.AUGMENTS applies each


def policy_names(policy: str) -> list[str]:
  """'color,translation' -> ['color', 'translation']; '' -> []."""
  return [p.strip() for p in policy.split(",") if p.strip()]


POLICY = cfg.Rule((str,), lambda v: set(policy_names(v)) <= set(AUGMENTS),
                  "'' or a comma-separated subset of " + ", ".join(AUGMENTS))

OPTIONS: cfg.Options = {
    "model.spectral_norm": Option("none", cfg.choice(*SPECTRAL_NORM),
                               "spectral normalization (Miyato et al. 2018) of every kernel: none, "
                               "d, or g_and_d; one power iteration per training forward pass"),
    "model.d_projection": Option(False, cfg.FLAG, "projection discriminator (Miyato and Koyama 2018): "
                              "logit + <embed(y), features>"),
    "model.g_shared_embedding": Option(
        0, cfg.integer(0), "BigGAN's shared class embedding (Brock et al. 2019) in a conditional "
        "resnet G: its size; each block's gain and bias are linear in it (0: a table per block)"),
    "augment.policy": Option("", POLICY, "DiffAugment (Zhao et al. 2020) on D's real and generated "
                          "inputs: '' or a subset of color,translation,cutout"),
    "loss.lecam_weight": Option(0.0, cfg.number(0.0), "LeCam regularization lambda (Tseng et al. "
                             "2021; 0: off)"),
    "loss.lecam_decay": Option(0.99, cfg.number(0.0, 1.0, open_hi=True),
                            "LeCam: decay of the EMAs of D's outputs on real and generated images"),
}


def validate(config) -> None:
  """Combinations of the toolkit's options with the others that per-option rules can't see."""
  m = config.model
  if m.d_projection and m.conditioning == "none":
    raise cfg.ConfigError("config.model.d_projection needs a conditional generator: set "
                          "config.model.conditioning (e.g. 'cbn' with config.model.arch='resnet').")
  if m.conditioning == "cbn" and m.arch != "resnet":
    raise cfg.ConfigError(f"config.model.conditioning='cbn' (conditional batch norm) needs "
                          f"config.model.arch='resnet', not {m.arch!r}.")
  if m.g_shared_embedding and (m.arch != "resnet" or m.conditioning == "none"):
    raise cfg.ConfigError("config.model.g_shared_embedding needs a conditional ResNet generator "
                          "(config.model.arch='resnet' and config.model.conditioning, e.g. 'cbn'); "
                          "set it to 0 otherwise.")
