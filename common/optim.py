"""Optimizers from a config block, all optax: one builder for the CNN and for each GAN player."""

import ml_collections
import optax

from common import config as cfg

NAMES = ("adam", "adamw", "adadelta", "rmsprop", "sgd")
SCHEDULES = ("constant", "cosine", "onecycle")


def default(name: str = "adam", learning_rate: float = 1e-3, **overrides) -> ml_collections.ConfigDict:
  """Every optimizer key, so that any of them can be overridden from the command line."""
  c = ml_collections.ConfigDict(dict(
      name=name, learning_rate=learning_rate,
      b1=0.9, b2=0.999,       # adam, adamw
      eps=1e-8,               # adam, adamw, adadelta, rmsprop
      rho=0.9,                # adadelta and rmsprop decay of the squared-gradient average
      momentum=0.0,           # sgd, rmsprop
      weight_decay=0.0,       # adamw (decoupled)
      schedule="constant",    # or cosine decay, or onecycle (warmup then cosine)
      warmup_fraction=0.0,    # onecycle: fraction of training spent warming up
  ))
  c.update(overrides)
  return c


def rules(prefix: str) -> dict[str, cfg.Rule]:
  return {
      f"{prefix}.name": cfg.choice(*NAMES),
      f"{prefix}.learning_rate": cfg.number(0.0, open_lo=True),
      f"{prefix}.b1": cfg.number(0.0, 1.0, open_hi=True),
      f"{prefix}.b2": cfg.number(0.0, 1.0, open_hi=True),
      f"{prefix}.eps": cfg.number(0.0),
      f"{prefix}.rho": cfg.number(0.0, 1.0, open_hi=True),
      f"{prefix}.momentum": cfg.number(0.0, 1.0, open_hi=True),
      f"{prefix}.weight_decay": cfg.number(0.0),
      f"{prefix}.schedule": cfg.choice(*SCHEDULES),
      f"{prefix}.warmup_fraction": cfg.number(0.0, 1.0, open_hi=True),
  }


def learning_rate(c: ml_collections.ConfigDict, total_steps: int) -> optax.Schedule:
  if c.schedule == "constant":
    return optax.constant_schedule(c.learning_rate)
  if c.schedule == "cosine":
    return optax.cosine_decay_schedule(c.learning_rate, max(total_steps, 1))
  return optax.warmup_cosine_decay_schedule(
      0.0, c.learning_rate, max(int(c.warmup_fraction * total_steps), 1), max(total_steps, 2))


def make(c: ml_collections.ConfigDict, total_steps: int) -> optax.GradientTransformation:
  lr = learning_rate(c, total_steps)
  if c.name == "adam":
    return optax.adam(lr, b1=c.b1, b2=c.b2, eps=c.eps)
  if c.name == "adamw":
    return optax.adamw(lr, b1=c.b1, b2=c.b2, eps=c.eps, weight_decay=c.weight_decay)
  if c.name == "adadelta":
    return optax.adadelta(lr, rho=c.rho, eps=c.eps)
  if c.name == "rmsprop":
    return optax.rmsprop(lr, decay=c.rho, eps=c.eps, momentum=c.momentum or None)
  return optax.sgd(lr, momentum=c.momentum or None)
