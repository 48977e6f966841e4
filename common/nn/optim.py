"""Optimizers from a config block (its options: common.options.optimizer), all optax: one builder for
the CNN and for each GAN player."""

import ml_collections
import optax


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
