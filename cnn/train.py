"""CNN classification: the train and eval steps, and `train_and_evaluate(config, workdir)`."""

import jax
import jax.numpy as jnp
import ml_collections
import optax
from absl import logging
from etils import epath
from flax import nnx

from common.data import placement as data_lib
from common.data import datasets
from common.nn import layers
from common.run import loop
from common.nn import optim
from common import parallel
from common.run import plots
from common.run import reporting
from common.run import runs
from common.data import shards
from cnn import options
from cnn import models


def build_model(model_config, info: datasets.DatasetInfo, dtype, key) -> layers.Sequential:
  """config.model's classifier for the dataset's example shape and classes."""
  m, rngs = model_config, nnx.Rngs(params=key)
  if m.name == "seed":
    return models.seed_cnn(info.shape, info.num_classes, dtype=dtype, rngs=rngs)
  return models.MODELS[m.name](info.shape, info.num_classes, tuple(m.widths), m.hidden,
                               m.dropout, dtype=dtype, rngs=rngs)


def random_shift(images: jax.Array, pixels: int, key: jax.Array) -> jax.Array:
  """Translates each image by up to `pixels` in every spatial direction (zero fill), on device."""
  spatial = images.ndim - 2
  pad = [(0, 0)] + [(pixels, pixels)] * spatial + [(0, 0)]
  padded = jnp.pad(images, pad)
  starts = jax.random.randint(key, (images.shape[0], spatial), 0, 2 * pixels + 1)
  crop = lambda img, s: jax.lax.dynamic_slice(  # pylint: disable=g-long-lambda
      img, tuple(s) + (0,), images.shape[1:-1] + images.shape[-1:])
  return jax.vmap(crop)(padded, starts)


def random_flip(images: jax.Array, key: jax.Array) -> jax.Array:
  """Mirrors each image left-right with probability 1/2, on device."""
  flip = jax.random.bernoulli(key, 0.5, (images.shape[0],) + (1,) * (images.ndim - 1))
  return jnp.where(flip, images[:, :, ::-1], images)


def make_task(model: layers.Sequential, tx: optax.GradientTransformation, *, dtype: str,
              augment_shift: int = 0, augment_flip: bool = False,
              workdir: str | None = None) -> loop.Task:
  """The classification task: cross-entropy from logits, accuracy, and Figure 3 at the end."""
  graphdef, params, model_state = nnx.split(model, nnx.Param, ...)
  dtype = jnp.dtype(dtype)

  def init(key):
    return loop.TrainState(step=jnp.int32(0), key=key, params=params,
                           opt_state=tx.init(params), model_state=model_state)

  def logits_fn(params, model_state, images, *, train, key=None):
    model = nnx.merge(graphdef, params, model_state, copy=True)  # fresh Variables in this trace
    logits = model(shards.to_float(images, dtype=dtype), train=train, key=key)
    return logits.astype(jnp.float32), nnx.state(model, nnx.BatchStat)

  def train_step(state, batch, key):
    images, labels = batch["image"][0], batch["label"][0]
    if augment_shift:
      images = random_shift(images, augment_shift, jax.random.fold_in(key, 2**31))
    if augment_flip:
      images = random_flip(images, jax.random.fold_in(key, 2**31 + 1))

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
    if workdir and reporting.is_writer() and history:
      plots.training_curves(history, f"{workdir}/training_curves.png",
                            [("loss", "val_loss"), ("accuracy", "val_accuracy")])
    test = results.get("test", {})
    if test:
      reporting.print_line(f"Test loss: {test['loss']:.4f} - Test accuracy: {test['accuracy']:.4f}")
    return {"num_params": layers.count_params(model)}

  return loop.Task(init=init, train_step=train_step, eval_step=eval_step, finish=finish)


def prepare(config: ml_collections.ConfigDict, workdir: str):
  """(task, info, splits, mesh) for a validated config: data on device, model, optimizer."""
  mesh = parallel.make_mesh()
  info, splits = data_lib.load(config, mesh, train_batch=config.batch_size,
                               eval_batch=config.eval_batch_size)
  model = build_model(config.model, info, jnp.dtype(config.dtype),
                      jax.random.PRNGKey(config.seed))
  reporting.print_line(layers.summary(model, info.shape, config.name))
  total_steps = shards.steps_per_epoch(splits["train"], config.batch_size) * config.num_epochs
  task = make_task(model, optim.make(config.optimizer, total_steps), dtype=config.dtype,
                   augment_shift=config.augment_shift, augment_flip=config.augment_flip,
                   workdir=workdir)
  return task, info, splits, mesh


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str, *,
                       fresh: bool = False) -> tuple[loop.TrainState, dict]:
  """Validates the config, loads data to device, trains (resuming from workdir), evaluates.

  Returns (state, results), results being results.json's contents.
  """
  options.validate(config)
  runs.check_workdir(workdir, config, options.OPTIONS, options.RETIRED, fresh)
  task, info, splits, mesh = prepare(config, workdir)
  runs.write_run_files(workdir, config, info, options.OPTIONS, options.RETIRED)
  logging.info("Training %s on %s with %d devices", config.name, config.dataset, mesh.size)
  return loop.run(config, workdir, task, splits, mesh)


def restore_classifier(workdir: str, mesh, step: int | None = None):
  """A trained classifier read back: (runs.Restored, its model in inference form)."""

  def model_of(config, info):
    return build_model(config.model, info, jnp.dtype(config.dtype), jax.random.PRNGKey(0))

  def template(config, info):
    task = make_task(model_of(config, info), optim.make(config.optimizer, 1), dtype=config.dtype)
    return parallel.replicate(mesh, task.init(jax.random.PRNGKey(0)))

  try:
    run = runs.restore_run(workdir, options.OPTIONS, template, retired=options.RETIRED, step=step,
                           what="cnn classifier run")
  except runs.RunError as e:
    if (epath.Path(workdir) / runs.CONFIG_FILE).exists():  # another kind of run lives there
      raise runs.RunError(f"{e} Pass a cnn run's workdir (train one with `python -m cnn.main "
                          "--config=configs/cnn.py --workdir=runs/cnn`).") from None
    raise runs.RunError(f"{e} Train a classifier with `python -m cnn.main "
                        f"--config=configs/cnn.py --workdir={workdir}`.") from None
  graphdef = nnx.split(model_of(run.config, run.info), nnx.Param, ...)[0]
  return run, nnx.merge(graphdef, run.state.params, run.state.model_state)
