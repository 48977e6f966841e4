"""CNN classification: the train and eval steps, and `train_and_evaluate(config, workdir)`."""

import os

import jax
import jax.numpy as jnp
import ml_collections
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
from cnn import models
from configs import cnn_base

RULES = {
    **loop.RULES,
    **optim.rules("optimizer"),
    "model.name": cfg.choice(*models.MODELS),
    "model.widths": cfg.INTS,
    "model.hidden": cfg.integer(1),
    "model.dropout": cfg.number(0.0, 1.0, open_hi=True),
    "model.ndim": cfg.choice(1, 2),
    "augment_shift": cfg.integer(0, 8),
}


def build_model(config: ml_collections.ConfigDict, input_shape, num_classes: int, key):
  dtype = jnp.dtype(config.dtype)
  rngs = nnx.Rngs(params=key)
  m = config.model
  if m.name == "seed":
    return models.seed_cnn(num_classes, input_shape[-1], dtype=dtype, rngs=rngs)
  return models.MODELS[m.name](num_classes, input_shape[-1], input_shape[0], tuple(m.widths), m.hidden,
                        m.dropout, m.ndim, dtype=dtype, rngs=rngs)


def random_shift(images: jax.Array, pixels: int, key: jax.Array) -> jax.Array:
  """Translates each image by up to `pixels` in every spatial direction (zero fill), on device."""
  spatial = images.ndim - 2
  pad = [(0, 0)] + [(pixels, pixels)] * spatial + [(0, 0)]
  padded = jnp.pad(images, pad)
  starts = jax.random.randint(key, (images.shape[0], spatial), 0, 2 * pixels + 1)
  crop = lambda img, s: jax.lax.dynamic_slice(  # pylint: disable=g-long-lambda
      img, tuple(s) + (0,), images.shape[1:-1] + images.shape[-1:])
  return jax.vmap(crop)(padded, starts)


def make_task(config, model: layers.Sequential, tx: optax.GradientTransformation,
              workdir: str) -> loop.Task:
  """The classification task: cross-entropy from logits, accuracy, and Figure 3 at the end."""
  graphdef, params, model_state = nnx.split(model, nnx.Param, ...)
  dtype = jnp.dtype(config.dtype)

  def init(key):
    return loop.TrainState(step=jnp.int32(0), key=key, params=params,
                           opt_state=tx.init(params), model_state=model_state)

  def logits_fn(params, model_state, images, *, train, key=None):
    model = nnx.merge(graphdef, params, model_state, copy=True)  # fresh Variables in this trace
    logits = model(data_lib.to_float(images, dtype=dtype), train=train, key=key)
    return logits.astype(jnp.float32), nnx.state(model, nnx.BatchStat)

  def train_step(state, batch, key):
    images, labels = batch["image"][0], batch["label"][0]
    if config.augment_shift:
      images = random_shift(images, config.augment_shift, jax.random.fold_in(key, 2**31))

    def loss_fn(params):
      logits, model_state = logits_fn(params, state.model_state, images, train=True, key=key)
      loss = optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
      return loss, (logits, model_state)

    (loss, (logits, model_state)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    accuracy = jnp.mean(jnp.argmax(logits, -1) == labels)
    return (state.replace(params=params, opt_state=opt_state, model_state=model_state),
            {"loss": loss, "accuracy": accuracy})

  def eval_step(state, batch):
    logits, _ = logits_fn(state.params, state.model_state, batch["image"], train=False)
    mask = batch["mask"].astype(jnp.float32)
    loss = optax.softmax_cross_entropy_with_integer_labels(logits, batch["label"])
    correct = (jnp.argmax(logits, -1) == batch["label"]).astype(jnp.float32)
    return {"loss": jnp.sum(loss * mask), "accuracy": jnp.sum(correct * mask)}

  def finish(state, history, results):
    del state
    if reporting.is_writer() and history:
      plots.training_curves(history, f"{workdir}/training_curves.png",
                            [("loss", "val_loss"), ("accuracy", "val_accuracy")])
    test = results.get("test", {})
    if test:
      reporting.print_line(f"Test loss: {test['loss']:.4f} - Test accuracy: {test['accuracy']:.4f}")
    return {"num_params": layers.count_params(model)}

  return loop.Task(init=init, train_step=train_step, eval_step=eval_step, finish=finish)


def prepare(config: ml_collections.ConfigDict, workdir: str):
  """(task, splits, mesh) for a validated config: data on device, model, optimizer."""
  cfg.validate(config, RULES)
  mesh = parallel.make_mesh()
  splits = data_lib.load(config, mesh, train_batch=config.batch_size,
                         eval_batch=config.eval_batch_size)
  input_shape = splits["train"].example_shape
  model = build_model(config, input_shape, 10, jax.random.PRNGKey(config.seed))
  reporting.print_line(layers.summary(model, input_shape, config.name))
  total_steps = data_lib.steps_per_epoch(splits["train"], config.batch_size) * config.num_epochs
  tx = optim.make(config.optimizer, total_steps)
  return make_task(config, model, tx, workdir), splits, mesh


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str, *,
                       fresh: bool = False) -> dict:
  """Validates the config, loads data to device, trains (resuming from workdir), evaluates."""
  cfg.validate(config, RULES)
  checkpoint.check_workdir(workdir, cfg.to_dict(config), fresh)
  task, splits, mesh = prepare(config, workdir)
  reporting.write_json(workdir, "config.json", cfg.to_dict(config))
  logging.info("Training %s on %s with %d devices", config.name, config.dataset, mesh.size)
  return loop.run(config, workdir, task, splits, mesh)


def load_trained(workdir: str, mesh, input_shape=(28, 28, 1)):
  """(config, model) of the latest checkpoint of a CNN run in workdir, in inference mode."""
  path = os.path.join(workdir, "config.json")
  if not os.path.exists(path) or not os.path.isdir(os.path.join(workdir, "checkpoints")):
    raise FileNotFoundError(
        f"No trained classifier in {workdir}: train one with "
        f"`python -m cnn.main --config=configs/cnn.py --workdir={workdir}`.")
  config = cfg.load_saved(path, cnn_base.get_config())
  model = build_model(config, input_shape, 10, jax.random.PRNGKey(config.seed))
  task = make_task(config, model, optim.make(config.optimizer, 1), workdir)
  state, _, _ = checkpoint.restore_latest(
      workdir, parallel.replicate(mesh, task.init(jax.random.PRNGKey(0))))
  graphdef, _, _ = nnx.split(model, nnx.Param, ...)
  return config, nnx.merge(graphdef, state.params, state.model_state)
