"""GAN training: the task the shared loop runs (the step, per-epoch sample grids and loss figure)
and `train_and_evaluate(config, workdir)`."""

import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import logging

from common.data import placement as data_lib
from common.data import datasets
from common.run import loop
from common import parallel
from common.run import plots
from common.run import reporting
from common.run import runs
from common.data import shards
from gan import evaluation
from gan import options
from gan import players as players_lib
from gan.step import make_train_step

GRID_COLUMNS = 10
GRID_ROWS = 10  # at most: one row per class up to 10 classes; more classes show 10 spread out


def grid_rows(info: datasets.DatasetInfo, conditional: bool) -> tuple[np.ndarray, list | None]:
  """The class of each grid row and the rows' labels (class names; none when unconditional)."""
  if not conditional:
    return np.zeros(GRID_ROWS, np.int32), None
  rows = np.unique(np.linspace(0, info.num_classes - 1, min(info.num_classes, GRID_ROWS))
                   .round().astype(np.int32))
  return rows, [info.class_names[c] for c in rows]


def make_task(config, info: datasets.DatasetInfo, players: players_lib.Players, g_tx, d_tx,
              workdir: str, evaluator=None) -> loop.Task:
  """The GAN task for the shared loop: init, the adversarial step, per-epoch samples, plots and
  (with an evaluator) metrics every eval_every_epochs."""
  rows, row_labels = grid_rows(info, options.conditional(config))
  grid_labels = jnp.asarray(np.repeat(rows, GRID_COLUMNS))
  z_fixed, _ = players_lib.sample_latent(config.model, info.num_classes,
                                         jax.random.PRNGKey(config.seed + 1), len(grid_labels))
  sample_grid = jax.jit(lambda state: players_lib.to_uint8(
      players.sample(state, z_fixed, grid_labels)))

  def on_epoch_end(state, history, writer):
    epoch = history[-1]["epoch"]
    images = np.asarray(jax.device_get(sample_grid(state)))
    if reporting.is_writer():
      if epoch % config.sample_every_epochs == 0 or epoch == config.num_epochs:
        plots.save_grid(images, os.path.join(workdir, "samples", f"epoch_{epoch:03d}.png"),
                        len(rows), f"{config.name}, epoch {epoch}", row_labels)
        writer.write_images("samples", images[:64], history[-1]["step"])
      plots.training_curves(history, os.path.join(workdir, "losses.png"),
                            [("d_loss", "g_loss")], f"{config.name}: discriminator and generator",
                            ylabels=["loss"])
    warn_collapse(history)
    due = epoch % config.eval_every_epochs == 0 or epoch == config.num_epochs
    return evaluator(state) if evaluator is not None and due else None

  def finish(state, history, results):
    del state, history, results
    return {"num_params": players.num_params}

  return loop.Task(
      init=lambda key: players_lib.init_state(players, g_tx, d_tx, config.g_ema_decay > 0, key,
                                              config.loss.lecam_weight > 0),
      train_step=make_train_step(config, players, g_tx, d_tx), batches_per_step=config.d_steps,
      on_epoch_end=on_epoch_end, finish=finish)


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


def prepare(config: ml_collections.ConfigDict, workdir: str):
  """(task, info, splits, mesh, players) for a validated config: data on device, players."""
  mesh = parallel.make_mesh()
  info, splits = data_lib.load(config, mesh, train_batch=config.batch_size,
                               eval_batch=config.eval_batch_size)
  if info.dtype != "uint8" or len(info.shape) != 3:
    raise datasets.DataError(f"The GANs draw images; {info.name} holds {info.dtype} examples of "
                             f"shape {info.shape}. Use an image dataset.")
  total_steps = (shards.steps_per_epoch(splits["train"], config.batch_size, config.d_steps)
                 * config.num_epochs)
  players, g_tx, d_tx = players_lib.build(config, info, total_steps)
  reporting.print_line(f"{config.name}: generator {players.num_params['g']:,} parameters, "
                       f"discriminator {players.num_params['d']:,} parameters")
  evaluator = evaluation.TrainingEvaluator(config, info, players, mesh)
  task = make_task(config, info, players, g_tx, d_tx, workdir, evaluator)
  return task, info, splits, mesh, players


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str, *,
                       fresh: bool = False) -> tuple[loop.TrainState, dict]:
  """Validates, loads data to device, trains (resuming from workdir), samples and evaluates.

  Returns (state, results), results being results.json's contents.
  """
  options.validate(config)
  runs.check_workdir(workdir, config, options.OPTIONS, options.RETIRED, fresh)
  task, info, splits, mesh, players = prepare(config, workdir)
  runs.write_run_files(workdir, config, info, options.OPTIONS, options.RETIRED)
  logging.info("Training %s on %s with %d devices", config.name, config.dataset, mesh.size)
  state, results = loop.run(config, workdir, task, {"train": splits["train"]}, mesh)
  if results["preempted"] or not config.eval_samples:
    return state, results
  try:
    results["eval"] = evaluation.evaluate(config, info, players, state, mesh)
  except runs.RunError as e:
    reporting.print_line(f"Skipped evaluation: {e}")
    return state, results
  reporting.write_json(workdir, "results.json", results)
  return state, results
