"""The generator and discriminator as pure functions of their variables, what training, sampling
and evaluation all need: the latent draw, the training state, samples, and a trained GAN read back.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from common.data import datasets
from common.nn import layers
from common.run import loop
from common.nn import optim
from common import parallel
from common.run import runs
from gan import options
from gan import models


def sample_latent(model_config, num_classes: int, key, n: int) -> tuple[jax.Array, jax.Array]:
  """z [n, Z] from U[-1, 1] or N(0, 1), and labels [n] uniform over the classes."""
  kz, ky = jax.random.split(key)
  shape = (n, model_config.latent_dim)
  if model_config.latent_dist == "uniform":
    z = jax.random.uniform(kz, shape, minval=-1.0, maxval=1.0)
  else:
    z = jax.random.normal(kz, shape)
  return z, jax.random.randint(ky, (n,), 0, num_classes)


def to_uint8(images: jax.Array) -> jax.Array:
  """Generator output in [-1, 1] to dataset-style uint8 pixels."""
  return jnp.clip(jnp.round((images.astype(jnp.float32) + 1.0) * 127.5), 0, 255).astype(jnp.uint8)


class Players:
  """The generator and discriminator as pure functions of their variables."""

  def __init__(self, g: models.Generator, d: models.Discriminator, dtype, num_classes: int):
    self.g_def, g_params, g_state = nnx.split(g, nnx.Param, ...)
    self.d_def, d_params, d_state = nnx.split(d, nnx.Param, ...)
    self.params = {"g": g_params, "d": d_params}
    self.model_state = {"g": g_state, "d": d_state}
    self.dtype = dtype
    self.num_classes = num_classes
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


def build(config, info: datasets.DatasetInfo, total_steps: int):
  """(players, g_tx, d_tx) for config on the dataset's image shape and classes."""
  g, d = models.build(config.model, info.shape, info.num_classes, jnp.dtype(config.dtype),
                      jax.random.PRNGKey(config.seed))
  players = Players(g, d, jnp.dtype(config.dtype), info.num_classes)
  return (players, optim.make(config.g_optimizer, total_steps),
          optim.make(config.d_optimizer, total_steps))


def init_state(players: Players, g_tx, d_tx, g_ema: bool, key, lecam: bool = False
               ) -> loop.TrainState:
  """The training state; with g_ema, a non-trainable copy of G's weights saved with the rest;
  with lecam, the EMAs of D's mean outputs on real and generated images (LeCam)."""
  model_state = dict(players.model_state)
  if g_ema:
    model_state["g_ema"] = jax.tree.map(jnp.copy, players.params["g"])
  if lecam:
    model_state["lecam"] = {"real": jnp.float32(0.0), "fake": jnp.float32(0.0)}
  return loop.TrainState(
      step=jnp.int32(0), key=key, params=players.params,
      opt_state={"g": g_tx.init(players.params["g"]), "d": d_tx.init(players.params["d"])},
      model_state=model_state)


def ema_update(ema, params, decay: float, step: jax.Array):
  """One step of G's weight average; the decay ramps up as (1 + t) / (10 + t), as TF's
  ExponentialMovingAverage with num_updates, so early averages do not remember the init."""
  d = jnp.minimum(decay, (1.0 + step) / (10.0 + step))
  return optax.incremental_update(params, ema, 1.0 - d)


def generate(config, players: Players, state, num: int, key, label: int | None = None,
             batch: int = 500) -> tuple[np.ndarray, np.ndarray]:
  """num uint8 samples from the generator and their labels (balanced, or all `label`)."""
  labels = (np.full(num, label) if label is not None
            else np.arange(num) % players.num_classes).astype(np.int32)
  return generate_for(config, players, state, labels, key, batch), labels


def generate_for(config, players: Players, state, labels: np.ndarray, key,
                 batch: int = 500) -> np.ndarray:
  """uint8 samples from the generator, one per entry of `labels` (ignored if unconditional)."""
  labels = np.asarray(labels, np.int32)
  fn = jax.jit(lambda z, y: to_uint8(players.sample(state, z, y)))
  out = []
  for i in range(0, len(labels), batch):
    y = labels[i:i + batch]
    z, _ = sample_latent(config.model, players.num_classes, jax.random.fold_in(key, i), len(y))
    out.append(np.asarray(fn(z, y)))
  return np.concatenate(out)


def restore(workdir: str, mesh, step: int | None = None):
  """A trained GAN read back: (runs.Restored, players)."""

  def template(config, info):
    players, g_tx, d_tx = build(config, info, 1)
    state = init_state(players, g_tx, d_tx, config.g_ema_decay > 0, jax.random.PRNGKey(0),
                       config.loss.lecam_weight > 0)
    return parallel.replicate(mesh, state)

  run = runs.restore_run(workdir, options.OPTIONS, template, retired=options.RETIRED, step=step,
                         what="GAN run")
  return run, build(run.config, run.info, 1)[0]
