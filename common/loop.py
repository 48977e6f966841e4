"""The training loop both the CNN and the GANs run: epochs on device, checkpoints, resume, logs.

A task supplies pure functions (`init`, `train_step`, `eval_step`); this module compiles

  train_chunk(state, data, stop, sums) -> (state, sums, first_bad_step)

once: a `lax.fori_loop` over steps `state.step .. stop` of one epoch, each step gathering its batch
from the on-device dataset by this epoch's permutation and taking its key from
`fold_in(step_key, step)`. The host only starts chunks, so exact resume needs nothing but the
state: the epoch, the permutation and every key follow from `state.step` and `state.key`.
A training split streamed from the host (data.StreamedSplit) gets the same batches: the host
gathers each chunk's rows by the same permutation and a background thread puts them on device.
"""

import dataclasses
import time
from typing import Any, Callable

import flax
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import logging

from common import checkpoint
from common import config as cfg
from common import data as data_lib
from common import parallel
from common import reporting

Metrics = dict[str, jax.Array]
Batch = dict[str, jax.Array]
# Steps per host-to-device transfer when the training split streams from the host.
STREAM_CHUNK_STEPS = 16

RULES = {
    "name": cfg.TEXT,
    "dataset": cfg.TEXT,
    "data_dir": cfg.TEXT,
    "manual_dir": cfg.TEXT,
    "validation_split": cfg.number(0.0, 1.0, open_hi=True),
    "train_examples": cfg.integer(0),
    "seed": cfg.integer(0),
    "batch_size": cfg.integer(1),
    "eval_batch_size": cfg.integer(1),
    "num_epochs": cfg.integer(1),
    "steps_per_call": cfg.integer(0),
    "eval_every_epochs": cfg.integer(1),
    "checkpoint_every_epochs": cfg.integer(1),
    "max_checkpoints": cfg.integer(1),
    "dtype": cfg.choice("float32", "bfloat16"),
    "progress_bar": cfg.choice("auto", "on", "off"),
    "data_placement": cfg.choice("auto", "device", "host"),
}


def base_config() -> ml_collections.ConfigDict:
  """The keys every run has; task configs add theirs."""
  return ml_collections.ConfigDict(dict(
      name="run",
      dataset="mnist",
      data_dir="",          # TFDS data_dir; default $TFDS_DATA_DIR or ~/tensorflow_datasets
      manual_dir="",        # original files for offline preparation; default $TFDS_MANUAL_DIR
      validation_split=0.0,  # last fraction of the training split, as Keras's validation_split
      train_examples=0,      # use only the first N training examples (0: all of them)
      seed=0,
      batch_size=128,
      eval_batch_size=1000,
      num_epochs=1,
      steps_per_call=0,      # steps per host round trip; 0: a whole epoch (or 1/30 on a terminal)
      eval_every_epochs=1,
      checkpoint_every_epochs=1,
      max_checkpoints=3,
      dtype="float32",       # compute dtype; parameters and optimizer state stay float32
      progress_bar="auto",
      data_placement="auto",  # training split on 'device', streamed from 'host', or by size
  ))


@flax.struct.dataclass
class TrainState:
  """Everything a step reads and writes; a pytree that jit donates and orbax saves whole."""
  step: jax.Array          # int32 [], steps taken
  key: jax.Array           # uint32 [2], the run's key; each step uses fold_in(., step)
  params: Any              # trainable variables (nnx.State, or a dict of them for GANs)
  opt_state: Any
  model_state: Any         # non-trainable variables such as batch statistics


@dataclasses.dataclass
class Task:
  """What a model family gives the loop. Steps are pure; batches arrive as uint8 on device.

  train_step(state, batch, key) -> (state without step increment, metrics): batch arrays are
    [batches_per_step, B, ...]; metrics are per-step means, averaged over the epoch by the loop.
  eval_step(state, batch) -> sums over the batch's real examples (batch['mask']), divided by the
    split's size by the loop.
  """
  init: Callable[[jax.Array], TrainState]
  train_step: Callable[[TrainState, Batch, jax.Array], tuple[TrainState, Metrics]]
  eval_step: Callable[[TrainState, Batch], Metrics] | None = None
  batches_per_step: int = 1
  on_epoch_end: Callable[[TrainState, list[dict], reporting.Writer], None] | None = None
  finish: Callable[[TrainState, list[dict], dict], dict] | None = None


class NonFiniteError(FloatingPointError):
  """A loss or metric became NaN or Inf; the last good checkpoint is kept."""


def run_keys(key: jax.Array) -> tuple[jax.Array, jax.Array]:
  """(shuffle key, step key) derived from the run's key (state.key)."""
  shuffle_key, step_key = jax.random.split(key)
  return shuffle_key, step_key


def epoch_chunks(start: int, steps_per_epoch: int, chunk: int) -> list[tuple[int, int]]:
  """(start, stop) of each call's steps within one epoch, from step `start` of it."""
  return [(a, min(a + chunk, steps_per_epoch)) for a in range(start, steps_per_epoch, chunk)]


def make_train_chunk(task: Task, steps_per_epoch: int, per_shard_batch: int,
                     streamed: bool = False):
  """The jitted chunk of steps; see the module docstring.

  `data` is the DeviceSplit, or for a streamed split the chunk's rows from data.stream_chunks.
  """

  def train_chunk(state: TrainState, data, stop, sums):
    shuffle_key, step_key = run_keys(state.key)
    start = state.step % steps_per_epoch
    if streamed:
      batch_at = lambda i: data_lib.slice_batches(  # pylint: disable=g-long-lambda
          data, i * task.batches_per_step, task.batches_per_step, per_shard_batch)
    else:
      perm = data_lib.epoch_permutation(
          jax.random.fold_in(shuffle_key, state.step // steps_per_epoch), data.num_shards,
          data.per_shard)
      batch_at = lambda i: data_lib.gather_batches(  # pylint: disable=g-long-lambda
          data, perm, (start + i) * task.batches_per_step, task.batches_per_step, per_shard_batch)

    def body(i, carry):
      state, sums, bad = carry
      batch = batch_at(i)
      state, metrics = task.train_step(state, batch, jax.random.fold_in(step_key, state.step))
      finite = jnp.all(jnp.stack([jnp.all(jnp.isfinite(m)) for m in jax.tree.leaves(metrics)]))
      bad = jnp.where((bad < 0) & ~finite, state.step, bad)
      sums = jax.tree.map(lambda s, m: s + m.astype(jnp.float32), sums, metrics)
      return state.replace(step=state.step + 1), sums, bad

    return jax.lax.fori_loop(0, stop - start, body, (state, sums, jnp.int32(-1)))

  return jax.jit(train_chunk, donate_argnums=(0, 3))


def batch_like(task: Task, split, global_batch: int) -> Batch:
  """Shapes and dtypes of one step's batch, for eval_shape."""
  lead = (task.batches_per_step, global_batch)
  return {"image": jax.ShapeDtypeStruct(lead + split.example_shape, split.images.dtype),
          "label": jax.ShapeDtypeStruct(lead, split.labels.dtype)}


def make_evaluate(task: Task, eval_batch: int):
  """Jitted pass over a padded split: sums of eval_step over batches, inside one fori_loop."""

  def evaluate(state: TrainState, split: data_lib.DeviceSplit):
    shards = split.images.shape[0]
    b = eval_batch // shards

    def batch(i):
      def take(a):
        x = jax.lax.dynamic_slice_in_dim(a, i * b, b, axis=1)
        return x.reshape((-1,) + x.shape[2:])
      return {"image": take(split.images), "label": take(split.labels), "mask": take(split.mask)}

    like = jax.eval_shape(task.eval_step, state, batch(0))
    zeros = jax.tree.map(lambda s: jnp.zeros(s.shape, jnp.float32), like)
    return jax.lax.fori_loop(
        0, split.per_shard // b,
        lambda i, sums: jax.tree.map(jnp.add, sums, task.eval_step(state, batch(i))), zeros)

  return jax.jit(evaluate)


def evaluate_split(evaluate, state, split: data_lib.DeviceSplit, prefix: str = "") -> dict:
  sums = jax.device_get(evaluate(state, split))
  return {prefix + k: float(v) / split.num_examples for k, v in sums.items()}


def _as_floats(tree) -> dict:
  return {k: float(v) for k, v in jax.device_get(tree).items()}


def run(config: ml_collections.ConfigDict, workdir: str, task: Task,
        splits: dict[str, data_lib.DeviceSplit], mesh) -> dict:
  """Trains config.num_epochs epochs (resuming from workdir), then evaluates on the test split.

  Returns results.json's contents. Stops early, with a checkpoint, on preemption: then
  results['preempted'] is True.
  """
  timer = reporting.Timer()
  train = splits["train"]
  per_shard_batch = config.batch_size // mesh.size
  steps_per_epoch = data_lib.steps_per_epoch(train, config.batch_size, task.batches_per_step)
  total_steps = steps_per_epoch * config.num_epochs
  if steps_per_epoch == 0:
    raise data_lib.DataError(
        f"One step needs {task.batches_per_step} batches of {config.batch_size}, more than the "
        f"{train.per_shard * mesh.size} training examples; lower config.batch_size.")

  state = task.init(jax.random.PRNGKey(config.seed))
  state = parallel.replicate(mesh, state)
  ckpts = checkpoint.Checkpoints(workdir, config.max_checkpoints)
  writer = reporting.Writer(workdir)
  meta = {"epoch_sums": None, "train_time_s": 0.0}
  if ckpts.latest_step() is not None:
    state, meta = ckpts.restore(state)
    logging.info("Resumed from step %d in %s", int(state.step), workdir)
  step = int(state.step)
  history = writer.history(up_to_epoch=step // steps_per_epoch)

  streamed = isinstance(train, data_lib.StreamedSplit)
  train_chunk = make_train_chunk(task, steps_per_epoch, per_shard_batch, streamed)
  evaluate = make_evaluate(task, config.eval_batch_size) if task.eval_step else None
  like_metrics = jax.eval_shape(task.train_step, state, batch_like(task, train, config.batch_size),
                                jax.random.PRNGKey(0))[1]
  zero_sums = lambda: parallel.replicate(  # pylint: disable=g-long-lambda
      mesh, jax.tree.map(lambda s: np.zeros(s.shape, np.float32), like_metrics))

  chunk = config.steps_per_call
  progress = reporting.Progress({"auto": None, "on": True, "off": False}[config.progress_bar])
  if chunk == 0 and streamed:
    chunk = min(steps_per_epoch, STREAM_CHUNK_STEPS)
  elif chunk == 0:
    chunk = max(1, steps_per_epoch // 30) if progress.enabled else steps_per_epoch
  if streamed:
    shuffle_key = run_keys(np.asarray(state.key.addressable_data(0)))[0]
    plan = ((epoch, a, b) for epoch in range(step // steps_per_epoch, config.num_epochs)
            for a, b in epoch_chunks(max(0, step - epoch * steps_per_epoch), steps_per_epoch,
                                     chunk))
    feed = data_lib.Prefetch(data_lib.stream_chunks(
        mesh, train, shuffle_key, plan, chunk, task.batches_per_step, per_shard_batch))
    data_like = jax.tree.map(
        lambda a: jax.ShapeDtypeStruct((train.num_shards, chunk * task.batches_per_step *
                                        per_shard_batch) + a.shape[2:], a.dtype,
                                       sharding=parallel.sharded(mesh)),
        {"image": train.images, "label": train.labels})
    next_data = lambda: next(feed)
  else:
    feed, data_like, next_data = None, train, lambda: train

  compile_start = time.perf_counter()
  compiled = train_chunk.lower(state, data_like, jnp.int32(0), zero_sums()).compile()
  compile_s = time.perf_counter() - compile_start
  logging.info("Compiled the training chunk in %.1fs", compile_s)
  preemption = checkpoint.Preemption()
  preempted = False
  train_time = meta["train_time_s"]
  try:
    while step < total_steps:
      epoch = step // steps_per_epoch + 1
      epoch_start_step = (epoch - 1) * steps_per_epoch
      sums = (parallel.replicate(mesh, {k: np.float32(v) for k, v in meta["epoch_sums"].items()})
              if meta.get("epoch_sums") else zero_sums())
      meta["epoch_sums"] = None
      resumed_steps = step - epoch_start_step
      t0 = time.perf_counter()
      for _, stop in epoch_chunks(resumed_steps, steps_per_epoch, chunk):
        state, sums, bad = compiled(state, next_data(), jnp.int32(stop), sums)
        step = epoch_start_step + stop
        if progress.enabled:
          jax.block_until_ready(sums)
          progress.update(epoch, config.num_epochs, step - epoch_start_step, steps_per_epoch,
                          time.perf_counter() - t0)
        _raise_if_bad(bad, ckpts)
        if preemption.reached(step) and step < epoch_start_step + steps_per_epoch:
          preempted = True
          break
      if preempted:
        meta = {"epoch_sums": _as_floats(sums), "train_time_s": train_time}
        ckpts.save(step, state, meta)
        logging.info("Process %d saved step %d on preemption", jax.process_index(), step)
        progress.clear()
        reporting.print_line(f"Preempted: saved step {step} (epoch {epoch}) in {workdir}; "
                             "rerun the same command to resume.")
        break
      jax.block_until_ready(sums)
      seconds = time.perf_counter() - t0
      train_time += seconds
      steps_done = steps_per_epoch - resumed_steps
      record = {"epoch": epoch, "step": step}
      record.update({k: v / steps_per_epoch for k, v in _as_floats(sums).items()})
      if evaluate is not None and "val" in splits and (
          epoch % config.eval_every_epochs == 0 or step == total_steps):
        record.update(evaluate_split(evaluate, state, splits["val"], "val_"))
      record["epoch_time_s"] = seconds
      record["examples_per_sec"] = (steps_done * config.batch_size * task.batches_per_step
                                    / max(seconds, 1e-9))
      _raise_if_nonfinite_eval(record, step, ckpts)
      progress.clear()
      shown = {k: record[k] for k in sorted(record, key=_display_order)
               if k not in ("epoch", "step", "epoch_time_s", "examples_per_sec")}
      reporting.print_line(reporting.keras_line(epoch, config.num_epochs, steps_per_epoch,
                                                steps_per_epoch, seconds, shown))
      writer.write_epoch(record)
      history.append(record)
      meta = {"epoch_sums": None, "train_time_s": train_time}
      saved = epoch % config.checkpoint_every_epochs == 0 or step == total_steps
      if saved:
        ckpts.save(step, state, meta)
      if task.on_epoch_end is not None:
        task.on_epoch_end(state, history, writer)
      if preemption.reached(step) and step < total_steps:
        if not saved:  # a signal during the epoch-end save must not save the same step twice
          ckpts.save(step, state, meta)
        logging.info("Process %d saved step %d on preemption", jax.process_index(), step)
        preempted = True
        reporting.print_line(f"Preempted: saved step {step} in {workdir}; rerun to resume.")
        break
  finally:
    if feed is not None:
      feed.close()
    ckpts.close()
    preemption.close()

  results = {"preempted": preempted, "step": step, "compile_time_s": compile_s,
             "train_time_s": train_time, "wall_time_s": timer()}
  if preempted:
    writer.close()
    return results
  if evaluate is not None:
    for name in ("val", "test"):
      if name in splits:
        results[name] = evaluate_split(evaluate, state, splits[name])
  if history:
    results["final_epoch"] = history[-1]
  if task.finish is not None:
    results.update(task.finish(state, history, results))
  results["wall_time_s"] = timer()
  reporting.write_json(workdir, "results.json", results)
  writer.close()
  results["state"] = state
  return results


def _display_order(key: str) -> tuple:
  """Keras's order: training metrics then validation ones, losses first within each."""
  return (key.startswith("val_"), "loss" not in key, key)


def _raise_if_bad(bad, ckpts) -> None:
  bad = int(bad)
  if bad >= 0:
    raise NonFiniteError(
        f"Non-finite loss or metric at step {bad}; stopped. The last good checkpoint "
        f"(step {ckpts.latest_step()}) is kept; lower the learning rate or check the data.")


def _raise_if_nonfinite_eval(record: dict, step: int, ckpts) -> None:
  for k, v in record.items():
    if isinstance(v, float) and not np.isfinite(v):
      raise NonFiniteError(f"{k} is {v} after step {step}; stopped. The last good checkpoint "
                           f"(step {ckpts.latest_step()}) is kept.")
