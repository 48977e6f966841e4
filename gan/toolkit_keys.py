"""The modern GAN toolkit's config keys (spectral norm, projection, DiffAugment, LeCam), each
declared once, and the combinations they refuse; gan.keys merges them. Imports no JAX."""

from common import config as cfg
from common.config import Key

SPECTRAL_NORM = ("none", "d", "g_and_d")
AUGMENTS = ("color", "translation", "cutout")  # gan.augment.AUGMENTS applies each


def policy_names(policy: str) -> list[str]:
  """'color,translation' -> ['color', 'translation']; '' -> []."""
  return [p.strip() for p in policy.split(",") if p.strip()]


POLICY = cfg.Rule((str,), lambda v: set(policy_names(v)) <= set(AUGMENTS),
                  "'' or a comma-separated subset of " + ", ".join(AUGMENTS))

KEYS: cfg.Keys = {
    "model.spectral_norm": Key("none", cfg.choice(*SPECTRAL_NORM),
                               "spectral normalization (Miyato et al. 2018) of every kernel: none, "
                               "d, or g_and_d; one power iteration per training forward pass"),
    "model.d_projection": Key(False, cfg.FLAG, "projection discriminator (Miyato and Koyama 2018): "
                              "logit + <embed(y), features>"),
    "augment.policy": Key("", POLICY, "DiffAugment (Zhao et al. 2020) on D's real and generated "
                          "inputs: '' or a subset of color,translation,cutout"),
    "loss.lecam_weight": Key(0.0, cfg.number(0.0), "LeCam regularization lambda (Tseng et al. "
                             "2021; 0: off)"),
    "loss.lecam_decay": Key(0.99, cfg.number(0.0, 1.0, open_hi=True),
                            "LeCam: decay of the EMAs of D's outputs on real and generated images"),
}


def validate(config) -> None:
  """Combinations of the toolkit's keys with the others that per-key rules can't see."""
  m = config.model
  if m.d_projection and m.conditioning == "none":
    raise cfg.ConfigError("config.model.d_projection needs a conditional generator: set "
                          "config.model.conditioning (e.g. 'cbn' with config.model.arch='resnet').")
  if m.conditioning == "cbn" and m.arch != "resnet":
    raise cfg.ConfigError(f"config.model.conditioning='cbn' (conditional batch norm) needs "
                          f"config.model.arch='resnet', not {m.arch!r}.")
