"""One adversarial training step for every variant, and `train_and_evaluate(config, workdir)`.

The step makes `d_steps` discriminator (critic) updates, each on its own real batch, then one
generator update; the config chooses the losses, so GAN, DCGAN, cGAN, ACGAN, WGAN and WGAN-GP
are all this one function.
"""

import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from absl import logging
from flax import nnx

from common import checkpoint
from common import config as cfg
from common import data as data_lib
from common import layers
from common import loop
from common import optim
from common import parallel
from common import plots
from common import reporting
from gan import losses
from gan import models

RULES = {
    **loop.RULES,
    **optim.rules("g_optimizer"),
    **optim.rules("d_optimizer"),
    "model.arch": cfg.choice(*models.ARCHS),
    "model.latent_dim": cfg.integer(1),
    "model.latent_dist": cfg.choice("uniform", "normal"),
    "model.num_classes": cfg.integer(1),
    "model.conditioning": cfg.choice(*models.CONDITIONING),
    "model.d_conditional": cfg.FLAG,
    "model.aux_classifier": cfg.FLAG,
    "model.g_width": cfg.integer(1),
    "model.d_width": cfg.integer(1),
    "model.g_hidden": cfg.integer(1),
    "model.d_norm": cfg.choice(*models.NORMS),
    "model.d_dropout": cfg.number(0.0, 1.0, open_hi=True),
    "model.init": cfg.choice(*models.INITS),
    "loss.d": cfg.choice(*losses.D_LOSSES),
    "loss.g": cfg.choice(*losses.G_LOSSES),
    "loss.label_smoothing": cfg.number(0.0, 0.5),
    "loss.clip": cfg.number(0.0),
    "loss.gp_weight": cfg.number(0.0),
    "loss.aux_weight_real": cfg.number(0.0),
    "loss.aux_weight_fake": cfg.number(0.0),
    "loss.aux_weight_g": cfg.number(0.0),
    "d_steps": cfg.integer(1),
    "g_ema_decay": cfg.number(0.0, 1.0, open_hi=True),
    "sample_every_epochs": cfg.integer(1),
    "classifier_workdir": cfg.TEXT,
    "eval_samples": cfg.integer(0),
}


def check(config) -> None:
  """Combinations that the per-key rules can't see."""
  cfg.validate(config, RULES)
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
  if (m.d_conditional or m.aux_classifier) and m.conditioning == "none":
    raise cfg.ConfigError("A conditional discriminator or auxiliary classifier needs a conditional "
                          "generator: set config.model.conditioning to 'concat' or 'multiply'.")


def conditional(config) -> bool:
  return config.model.conditioning != "none"


def sample_latent(config, key, n: int) -> tuple[jax.Array, jax.Array]:
  """z [n, Z] from U[-1, 1] or N(0, 1), and labels [n] uniform over the classes."""
  kz, ky = jax.random.split(key)
  shape = (n, config.model.latent_dim)
  if config.model.latent_dist == "uniform":
    z = jax.random.uniform(kz, shape, minval=-1.0, maxval=1.0)
  else:
    z = jax.random.normal(kz, shape)
  return z, jax.random.randint(ky, (n,), 0, config.model.num_classes)


def to_uint8(images: jax.Array) -> jax.Array:
  """Generator output in [-1, 1] to dataset-style uint8 pixels."""
  return jnp.clip(jnp.round((images.astype(jnp.float32) + 1.0) * 127.5), 0, 255).astype(jnp.uint8)


class Players:
  """The generator and discriminator as pure functions of their variables."""

  def __init__(self, g: models.Generator, d: models.Discriminator, dtype):
    self.g_def, g_params, g_state = nnx.split(g, nnx.Param, ...)
    self.d_def, d_params, d_state = nnx.split(d, nnx.Param, ...)
    self.params = {"g": g_params, "d": d_params}
    self.model_state = {"g": g_state, "d": d_state}
    self.dtype = dtype
    self.num_params = {"g": layers.count_params(g), "d": layers.count_params(d)}

  def generate(self, params, state, z, labels, *, train, key=None):
    g = nnx.merge(self.g_def, params, state, copy=True)  # fresh Variables in this trace
    images = g(z.astype(self.dtype), labels, train=train, key=key)
    return images, nnx.state(g, nnx.BatchStat)

  def sample(self, state, z, labels):
    """Images from the generator that samples and evaluation use: G's EMA when there is one."""
    params = state.model_state.get("g_ema", state.params["g"])
    return self.generate(params, state.model_state["g"], z, labels, train=False)[0]

  def discriminate(self, params, state, images, labels, *, train, key=None):
    d = nnx.merge(self.d_def, params, state, copy=True)
    out = d(images.astype(self.dtype), labels, train=train, key=key)
    return out, nnx.state(d, nnx.BatchStat)


def make_train_step(config, players: Players, g_tx, d_tx):
  """(state, batch [d_steps, B, ...], key) -> (state, metrics): the adversarial step."""
  l = config.loss
  wasserstein = l.d == "wasserstein"
  aux = config.model.aux_classifier
  d_cond = config.model.d_conditional

  def d_update(carry, inputs):
    d_params, d_opt, d_state, g_params, g_state = carry
    images, labels, key = inputs
    k_lat, k_gen, k_real, k_fake, k_gp = jax.random.split(key, 5)
    real = data_lib.to_float(images, (-1.0, 1.0), players.dtype)
    z, fake_labels = sample_latent(config, k_lat, real.shape[0])
    fake, _ = players.generate(g_params, g_state, z, fake_labels, train=True, key=k_gen)
    fake = jax.lax.stop_gradient(fake)

    def loss_fn(d_params):
      out_r, state = players.discriminate(d_params, d_state, real, labels, train=True, key=k_real)
      out_f, state = players.discriminate(d_params, state, fake, fake_labels, train=True,
                                          key=k_fake)
      r, f = out_r["logit"], out_f["logit"]
      m = {}
      if wasserstein:
        loss = losses.d_wasserstein(r, f)
        m["wasserstein"] = jnp.mean(r) - jnp.mean(f)
      else:
        loss = losses.d_minimax(r, f, 1.0 - l.label_smoothing)
        # The course's rule: D(x) > 0.5 means real.
        m.update(d_real=jnp.mean(jax.nn.sigmoid(r)), d_fake=jnp.mean(jax.nn.sigmoid(f)),
                 acc_real=jnp.mean(r > 0), acc_fake=jnp.mean(f < 0))
      if l.gp_weight > 0:
        critic = lambda x: players.discriminate(  # pylint: disable=g-long-lambda
            d_params, state, x, labels, train=True, key=k_real)[0]["logit"]
        gp = losses.gradient_penalty(critic, real, fake, k_gp)
        loss = loss + l.gp_weight * gp
        m["gp"] = gp
      if aux:
        aux_real = losses.aux_cross_entropy(out_r["class_logits"], labels)
        aux_fake = losses.aux_cross_entropy(out_f["class_logits"], fake_labels)
        loss = loss + l.aux_weight_real * aux_real + l.aux_weight_fake * aux_fake
        m.update(d_aux=aux_real + aux_fake, aux_acc_real=jnp.mean(
            jnp.argmax(out_r["class_logits"], -1) == labels))
      m["d_loss"] = loss
      return loss, (m, state)

    grads, (m, d_state) = jax.grad(loss_fn, has_aux=True)(d_params)
    updates, d_opt = d_tx.update(grads, d_opt, d_params)
    d_params = optax.apply_updates(d_params, updates)
    if l.clip > 0:
      d_params = losses.clip_weights(d_params, l.clip)
    return (d_params, d_opt, d_state, g_params, g_state), m

  def train_step(state, batch, key):
    p, o, s = state.params, state.opt_state, state.model_state
    d_keys = jax.random.split(jax.random.fold_in(key, 0), config.d_steps)
    labels = batch["label"] if d_cond or aux else jnp.zeros_like(batch["label"])
    (d_params, d_opt, d_state, _, _), d_metrics = jax.lax.scan(
        d_update, (p["d"], o["d"], s["d"], p["g"], s["g"]), (batch["image"], labels, d_keys))
    metrics = jax.tree.map(jnp.mean, d_metrics)

    k_lat, k_gen, k_disc = jax.random.split(jax.random.fold_in(key, 1), 3)
    z, fake_labels = sample_latent(config, k_lat, batch["image"].shape[1])

    def g_loss_fn(g_params):
      fake, g_state = players.generate(g_params, s["g"], z, fake_labels, train=True, key=k_gen)
      out, _ = players.discriminate(d_params, d_state, fake, fake_labels, train=True, key=k_disc)
      loss = {"minimax": losses.g_minimax, "non_saturating": losses.g_non_saturating,
              "wasserstein": losses.g_wasserstein}[l.g](out["logit"])
      m = {}
      if aux:
        g_aux = losses.aux_cross_entropy(out["class_logits"], fake_labels)
        loss = loss + l.aux_weight_g * g_aux
        m["g_aux"] = g_aux
      m["g_loss"] = loss
      return loss, (m, g_state)

    grads, (g_metrics, g_state) = jax.grad(g_loss_fn, has_aux=True)(p["g"])
    updates, g_opt = g_tx.update(grads, o["g"], p["g"])
    g_params = optax.apply_updates(p["g"], updates)
    metrics.update(g_metrics)
    model_state = {"g": g_state, "d": d_state}
    if config.g_ema_decay > 0:
      model_state["g_ema"] = ema_update(s["g_ema"], g_params, config.g_ema_decay, state.step)
    return state.replace(params={"g": g_params, "d": d_params}, opt_state={"g": g_opt, "d": d_opt},
                         model_state=model_state), metrics

  return train_step


def ema_update(ema, params, decay: float, step: jax.Array):
  """One step of G's weight average; the decay ramps up as (1 + t) / (10 + t), as TF's
  ExponentialMovingAverage with num_updates, so early averages do not remember the init."""
  d = jnp.minimum(decay, (1.0 + step) / (10.0 + step))
  return jax.tree.map(lambda e, p: e + (1.0 - d) * (p - e), ema, params)


def make_task(config, players: Players, g_tx, d_tx, workdir: str) -> loop.Task:
  """The GAN task for the shared loop: init, the adversarial step, per-epoch samples and plots."""

  def init(key):
    model_state = dict(players.model_state)
    if config.g_ema_decay > 0:  # a non-trainable copy of G's weights, saved with the rest
      model_state["g_ema"] = jax.tree.map(jnp.copy, players.params["g"])
    return loop.TrainState(
        step=jnp.int32(0), key=key, params=players.params,
        opt_state={"g": g_tx.init(players.params["g"]), "d": d_tx.init(players.params["d"])},
        model_state=model_state)

  # Fixed noise for the per-epoch grids: 10 rows, one per class for conditional models.
  z_fixed, _ = sample_latent(config, jax.random.PRNGKey(config.seed + 1), 100)
  grid_labels = jnp.repeat(jnp.arange(10) % config.model.num_classes, 10)
  sample_grid = jax.jit(lambda state: to_uint8(players.sample(state, z_fixed, grid_labels)))

  def on_epoch_end(state, history, writer):
    epoch = history[-1]["epoch"]
    images = np.asarray(jax.device_get(sample_grid(state)))
    if reporting.is_writer():
      if epoch % config.sample_every_epochs == 0 or epoch == config.num_epochs:
        rows = [str(c) for c in range(10)] if conditional(config) else None
        plots.save_grid(images, os.path.join(workdir, "samples", f"epoch_{epoch:03d}.png"), 10,
                        f"{config.name}, epoch {epoch}", rows)
        writer.write_images("samples", images[:64], history[-1]["step"])
      plots.training_curves(history, os.path.join(workdir, "losses.png"),
                            [("d_loss", "g_loss")], f"{config.name}: discriminator and generator")
    warn_collapse(history)

  def finish(state, history, results):
    del history, results
    return {"num_params": players.num_params}

  return loop.Task(init=init, train_step=make_train_step(config, players, g_tx, d_tx),
                   batches_per_step=config.d_steps, on_epoch_end=on_epoch_end, finish=finish)


def warn_collapse(history: list[dict], epochs: int = 3) -> None:
  """Warns when D is near-perfect while the generator's loss has climbed for `epochs` epochs."""
  recent = history[-(epochs + 1):]
  if len(recent) <= epochs or "acc_real" not in recent[-1]:
    return
  d_wins = all(r["acc_real"] > 0.98 and r["acc_fake"] > 0.98 for r in recent[1:])
  g_climbs = all(b["g_loss"] > a["g_loss"] for a, b in zip(recent, recent[1:]))
  if d_wins and g_climbs:
    reporting.print_line(f"Warning: possible collapse: the discriminator is over 98% accurate and "
                         f"g_loss has risen for {epochs} epochs (epoch {recent[-1]['epoch']}).")


def build(config, image_shape, total_steps: int):
  g, d = models.build(config.model, image_shape, jnp.dtype(config.dtype),
                      jax.random.PRNGKey(config.seed))
  players = Players(g, d, jnp.dtype(config.dtype))
  return players, optim.make(config.g_optimizer, total_steps), optim.make(config.d_optimizer,
                                                                          total_steps)


def prepare(config: ml_collections.ConfigDict, workdir: str):
  """(task, splits, mesh) for a validated config: data on device, players, optimizers."""
  check(config)
  mesh = parallel.make_mesh()
  splits = data_lib.load(config, mesh, train_batch=config.batch_size,
                         eval_batch=config.eval_batch_size)
  image_shape = splits["train"].example_shape
  total_steps = (data_lib.steps_per_epoch(splits["train"], config.batch_size, config.d_steps)
                 * config.num_epochs)
  players, g_tx, d_tx = build(config, image_shape, total_steps)
  reporting.print_line(f"{config.name}: generator {players.num_params['g']:,} parameters, "
                       f"discriminator {players.num_params['d']:,} parameters")
  return make_task(config, players, g_tx, d_tx, workdir), splits, mesh, players


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str, *,
                       fresh: bool = False) -> dict:
  """Validates, loads data to device, trains (resuming from workdir), samples and evaluates."""
  check(config)
  checkpoint.check_workdir(workdir, cfg.to_dict(config), fresh)
  task, splits, mesh, players = prepare(config, workdir)
  reporting.write_json(workdir, "config.json", cfg.to_dict(config))
  reporting.write_json(workdir, "dataset.json",
                       {"image_shape": list(splits["train"].example_shape)})
  logging.info("Training %s on %s with %d devices", config.name, config.dataset, mesh.size)
  results = loop.run(config, workdir, task, {"train": splits["train"]}, mesh)
  if results["preempted"] or not config.eval_samples:
    return results
  from gan import evaluate  # pylint: disable=g-import-not-at-top
  try:
    metrics = evaluate.evaluate(config, players, results["state"], mesh, workdir)
  except FileNotFoundError as e:
    reporting.print_line(f"Skipped evaluation: {e}")
    return results
  results["eval"] = metrics
  reporting.write_json(workdir, "results.json", {k: v for k, v in results.items() if k != "state"})
  return results
