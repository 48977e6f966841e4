"""The training loop both the CNN and the GANs run: epochs on device, checkpoints, resume, logs.

A task supplies pure functions (`init`, `train_step`, `eval_step`); this module compiles

  train_chunk(state, rows, stop, sums) -> (state, sums, first_bad_step)

once: a `lax.fori_loop` over steps `state.step .. stop` of one epoch, each step slicing its batch
from the chunk's rows and taking its key from `fold_in(step_key, step)`. The training split,
wherever it is placed (shards.DeviceSplit on the devices, streaming.StreamedSplit in host memory,
disk.DiskSplit on disk), gives the chunks' rows one way, `split.chunks(...)`, in the order of the
epoch's permutation: the same rows whatever the placement. The host only starts chunks, so exact
resume needs nothing but the state: the epoch, the permutation and every key follow from
`state.step` and `state.key`.

`run` goes through named phases: plan, restore, compile, then per epoch train (chunks) and end of
epoch (metrics, logs, checkpoint), and at the end finish (evaluation, results.json). A preemption
(SIGTERM) is noticed at chunk boundaries and saved by one path, `_save_preempted`.
"""

import dataclasses
import time
from typing import Any, Callable

import flax
import jax
import jax.numpy as jnp
import numpy as np
from absl import logging

from common.run import checkpoint
from common import parallel
from common.run import reporting
from common.data import shards

Metrics = dict[str, jax.Array]
Batch = dict[str, jax.Array]


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
  on_epoch_end(state, history, writer) -> extra metrics for this epoch's record (or None); history
    ends with this epoch's record, not yet written.
  finish(state, history, results) -> entries to add to results.json.
  """
  init: Callable[[jax.Array], TrainState]
  train_step: Callable[[TrainState, Batch, jax.Array], tuple[TrainState, Metrics]]
  eval_step: Callable[[TrainState, Batch], Metrics] | None = None
  batches_per_step: int = 1
  on_epoch_end: Callable[[TrainState, list[dict], reporting.Writer], dict | None] | None = None
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


def make_train_chunk(task: Task, steps_per_epoch: int, per_shard_batch: int):
  """The jitted chunk of steps; see the module docstring. `rows` are the chunk's rows
  [S, chunk_steps * batches_per_step * per_shard_batch, ...], as every placement's `chunks` gives
  them; step i of the chunk reads its batches from them one way, `shards.slice_batches`."""

  def train_chunk(state: TrainState, rows, stop, sums):
    _, step_key = run_keys(state.key)
    start = state.step % steps_per_epoch

    def body(i, carry):
      state, sums, bad = carry
      batch = shards.slice_batches(rows, i * task.batches_per_step, task.batches_per_step,
                                   per_shard_batch)
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
  return {"image": jax.ShapeDtypeStruct(lead + split.example_shape, split.image_dtype),
          "label": jax.ShapeDtypeStruct(lead, np.int32)}


def make_evaluate(task: Task, eval_batch: int):
  """Jitted pass over a padded split: sums of eval_step over batches, inside one fori_loop."""

  def evaluate(state: TrainState, split: shards.DeviceSplit):
    b = eval_batch // split.num_shards

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


def evaluate_split(evaluate, state, split: shards.DeviceSplit, prefix: str = "") -> dict:
  sums = jax.device_get(evaluate(state, split))
  return {prefix + k: float(v) / split.num_examples for k, v in sums.items()}


def _as_floats(tree) -> dict:
  return {k: float(v) for k, v in jax.device_get(tree).items()}


@dataclasses.dataclass(frozen=True)
class Plan:
  """What the loop derives once from the config, the task and the training split."""
  steps_per_epoch: int
  num_epochs: int
  per_shard_batch: int
  chunk: int          # steps per call of the compiled chunk

  @property
  def total_steps(self) -> int:
    return self.steps_per_epoch * self.num_epochs


def make_plan(config, task: Task, train, mesh, progress: reporting.Progress) -> Plan:
  steps = shards.steps_per_epoch(train, config.batch_size, task.batches_per_step)
  if steps == 0:
    raise shards.DataError(
        f"One step needs {task.batches_per_step} batches of {config.batch_size}, more than the "
        f"{train.per_shard * mesh.size} training examples; lower config.batch_size.")
  chunk = config.steps_per_call or (max(1, steps // 30) if progress.enabled else steps)
  if not config.steps_per_call and train.max_chunk_steps:  # e.g. the host memory of a chunk
    chunk = min(chunk, train.max_chunk_steps)
  return Plan(steps, config.num_epochs, config.batch_size // mesh.size, chunk)


def _restore(task: Task, mesh, ckpts: checkpoint.Checkpoints, seed: int, workdir: str):
  """(state, meta): the latest checkpoint's, or a fresh state from the seed."""
  state = parallel.replicate(mesh, task.init(jax.random.PRNGKey(seed)))
  meta = {"epoch_sums": None, "train_time_s": 0.0, "history": []}
  if ckpts.latest_step() is not None:
    state, saved = ckpts.restore(state)
    meta.update(saved)
  return state, meta


def _chunks(plan: Plan, task: Task, train, mesh, state, step: int):
  """The training split's chunks from `step` to the end, whatever its placement: an iterator of
  device rows with close()."""
  shuffle_key = run_keys(np.asarray(state.key.addressable_data(0)))[0]
  spe = plan.steps_per_epoch
  order = ((epoch, a, b) for epoch in range(step // spe, plan.num_epochs)
           for a, b in epoch_chunks(max(0, step - epoch * spe), spe, plan.chunk))
  return train.chunks(mesh, shuffle_key, order, plan.chunk,
                      task.batches_per_step * plan.per_shard_batch)


def _compile(task: Task, plan: Plan, state, train, mesh, say: bool = True):
  """(compiled chunk, a function giving zeroed metric sums, compile seconds)."""
  train_chunk = make_train_chunk(task, plan.steps_per_epoch, plan.per_shard_batch)
  rows = shards.chunk_like(train, mesh, plan.chunk * task.batches_per_step * plan.per_shard_batch)
  like_metrics = jax.eval_shape(
      task.train_step, state, batch_like(task, train, plan.per_shard_batch * mesh.size),
      jax.random.PRNGKey(0))[1]
  zero_sums = lambda: parallel.replicate(  # pylint: disable=g-long-lambda
      mesh, jax.tree.map(lambda s: np.zeros(s.shape, np.float32), like_metrics))
  if say:
    reporting.print_line("Compiling the training step...")
  start = time.perf_counter()
  compiled = train_chunk.lower(state, rows, jnp.int32(0), zero_sums()).compile()
  seconds = time.perf_counter() - start
  if say:
    reporting.print_line(f"Compiled in {seconds:.1f}s")
  return compiled, zero_sums, seconds


def train_in_memory(task: Task, train: shards.DeviceSplit, mesh, *, batch_size: int,
                    num_epochs: int, seed: int) -> TrainState:
  """The training core without a workdir (no checkpoints, logs or resume), for short trainings
  inside an evaluation (the CAS classifier): the same chunks, permutations and per-step keys as
  `run`, one compiled chunk per epoch."""
  state = parallel.replicate(mesh, task.init(jax.random.PRNGKey(seed)))
  steps = shards.steps_per_epoch(train, batch_size, task.batches_per_step)
  if steps == 0:  # fewer examples than one batch: nothing to train on
    return state
  plan = Plan(steps, num_epochs, batch_size // mesh.size, steps)
  compiled, zero_sums, _ = _compile(task, plan, state, train, mesh, say=False)
  for rows in _chunks(plan, task, train, mesh, state, 0):
    state, _, bad = compiled(state, rows, jnp.int32(steps), zero_sums())
    if int(bad) >= 0:
      raise NonFiniteError(f"Non-finite loss at step {int(bad)} of an in-memory training.")
  return state


@dataclasses.dataclass
class _Run:
  """What the phases of one run share."""
  config: Any
  workdir: str
  task: Task
  splits: dict
  mesh: Any
  plan: Plan
  ckpts: checkpoint.Checkpoints
  writer: reporting.Writer
  progress: reporting.Progress
  preemption: checkpoint.Preemption
  history: list
  evaluate: Callable | None
  best_ckpts: checkpoint.Checkpoints | None = None
  best: dict | None = None     # the best epoch so far by config.best_metric
  train_time: float = 0.0
  epoch_seconds: float = 0.0
  saved_step: int = -1


def run(config, workdir: str, task: Task, splits: dict, mesh) -> tuple[TrainState, dict]:
  """Trains config.num_epochs epochs (resuming from workdir), then evaluates on the test split.

  Returns (state, results), results being results.json's contents. On preemption it stops early
  with a checkpoint, and results['preempted'] is True.
  """
  timer = reporting.Timer()
  progress = reporting.Progress(config.progress_bar)
  plan = make_plan(config, task, splits["train"], mesh, progress)
  ckpts = checkpoint.Checkpoints(workdir, config.max_checkpoints)
  writer = reporting.Writer(workdir, config)
  state, meta = _restore(task, mesh, ckpts, config.seed, workdir)
  step = int(state.step)
  _say_where(step, plan, workdir)
  history = writer.history(up_to_epoch=step // plan.steps_per_epoch, recovered=meta["history"])
  evaluate = make_evaluate(task, config.eval_batch_size) if task.eval_step else None
  best_ckpts = (checkpoint.Checkpoints(workdir, 1, folder=checkpoint.BEST)
                if config.best_metric else None)
  r = _Run(config, workdir, task, splits, mesh, plan, ckpts, writer, progress,
           checkpoint.Preemption(), history, evaluate, best_ckpts, meta.get("best"),
           meta["train_time_s"])
  feed = _chunks(plan, task, splits["train"], mesh, state, step)
  try:
    compiled, zero_sums, compile_s = (
        _compile(task, plan, state, splits["train"], mesh)
        if step < plan.total_steps else (None, None, 0.0))
    epoch_sums = meta.get("epoch_sums")
    while step < plan.total_steps:
      sums = (parallel.replicate(mesh, {k: np.float32(v) for k, v in epoch_sums.items()})
              if epoch_sums else zero_sums())
      resumed_steps = step % plan.steps_per_epoch
      state, sums, step, whole = _train_epoch(r, compiled, state, sums, feed, step)
      epoch_sums = None
      if whole:
        _end_of_epoch(r, state, sums, step, resumed_steps)
      if step < plan.total_steps and (not whole or r.preemption.reached(step)):
        _save_preempted(r, state, step, None if whole else _as_floats(sums))
        break
  finally:
    feed.close()
    ckpts.close()
    if best_ckpts is not None:
      best_ckpts.close()
    r.preemption.close()
  results = {"preempted": step < plan.total_steps, "step": step, "compile_time_s": compile_s,
             "train_time_s": r.train_time, **({"best": r.best} if r.best else {})}
  if not results["preempted"]:
    _finish(r, state, results)
  results["wall_time_s"] = timer()
  if not results["preempted"]:
    reporting.write_json(workdir, "results.json", results)
  writer.close()
  return state, results


def _say_where(step: int, plan: Plan, workdir: str) -> None:
  """One line when a run does not start from scratch: resumed, or nothing left to do."""
  spe = plan.steps_per_epoch
  if step >= plan.total_steps:
    reporting.print_line(
        f"Already finished ({step // spe} epochs, step {step}) in {workdir}; evaluating it "
        f"again. Raise --config.num_epochs to train on, or pass another --workdir.")
  elif step > 0:
    within = f", step {step % spe}/{spe} of epoch {step // spe + 1}" if step % spe else ""
    reporting.print_line(f"Resumed from step {step} (epoch {step // spe}/{plan.num_epochs} "
                         f"done{within}) in {workdir}")


def _train_epoch(r: _Run, compiled, state, sums, feed, step: int):
  """Runs the chunks of the current epoch from `step`; stops early at a preemption.

  Returns (state, sums, step, whether the epoch is complete).
  """
  spe = r.plan.steps_per_epoch
  epoch, epoch_start = step // spe + 1, step // spe * spe
  t0 = time.perf_counter()
  for _, stop in epoch_chunks(step - epoch_start, spe, r.plan.chunk):
    state, sums, bad = compiled(state, next(feed), jnp.int32(stop), sums)
    step = epoch_start + stop
    if r.progress.enabled:
      jax.block_until_ready(sums)
      r.progress.update(epoch, r.plan.num_epochs, stop, spe, time.perf_counter() - t0)
    _raise_if_bad(bad, r.ckpts)
    if stop < spe and r.preemption.reached(step):
      return state, sums, step, False
  jax.block_until_ready(sums)
  r.epoch_seconds = time.perf_counter() - t0
  r.train_time += r.epoch_seconds
  return state, sums, step, True


def _end_of_epoch(r: _Run, state, sums, step: int, resumed_steps: int) -> None:
  """The epoch's record (train metrics, validation, task extras): printed, logged, checkpointed."""
  c, spe = r.config, r.plan.steps_per_epoch
  epoch = step // spe
  record = {"epoch": epoch, "step": step}
  record.update({k: v / spe for k, v in _as_floats(sums).items()})
  if "val" in r.splits and r.evaluate is not None and (
      epoch % c.eval_every_epochs == 0 or step == r.plan.total_steps):
    record.update(evaluate_split(r.evaluate, state, r.splits["val"], "val_"))
  record["epoch_time_s"] = r.epoch_seconds
  record["examples_per_sec"] = ((spe - resumed_steps) * c.batch_size * r.task.batches_per_step
                                / max(r.epoch_seconds, 1e-9))
  r.history.append(record)
  if r.task.on_epoch_end is not None:
    record.update(r.task.on_epoch_end(state, r.history, r.writer) or {})
  _raise_if_nonfinite_eval(record, step, r.ckpts)
  r.progress.clear()
  shown = {k: v for k, v in sorted(record.items(), key=lambda kv: _display_order(kv[0]))
           if k not in ("epoch", "step", "epoch_time_s", "examples_per_sec")}
  reporting.print_line(reporting.keras_line(epoch, c.num_epochs, spe, spe, r.epoch_seconds, shown))
  r.writer.write_epoch(record)
  _keep_if_best(r, state, record)
  if epoch % c.checkpoint_every_epochs == 0 or step == r.plan.total_steps:
    _save(r, state, step, None)


def _keep_if_best(r: _Run, state, record: dict) -> None:
  """Saves the state to the best-checkpoint folder when config.best_metric improves."""
  name, sign = r.config.best_metric, 1.0 if r.config.best_mode == "min" else -1.0
  if r.best_ckpts is None or name not in record:
    return
  if r.best is None or sign * record[name] < sign * r.best["value"]:
    r.best = {"metric": name, "value": record[name], "epoch": record["epoch"],
              "step": record["step"]}
    r.best_ckpts.save(record["step"], state, {"best": r.best})


def _save(r: _Run, state, step: int, epoch_sums: dict | None) -> None:
  """Saves state and a JSON record: the partial epoch's metric sums, training time, history."""
  if step != r.saved_step:  # a preemption right after the epoch-end save saves nothing twice
    r.ckpts.save(step, state, {"epoch_sums": epoch_sums, "train_time_s": r.train_time,
                               "history": r.history, "best": r.best})
    r.saved_step = step


def _save_preempted(r: _Run, state, step: int, epoch_sums: dict | None) -> None:
  """The one preemption path: save where the run stands, then say how to resume."""
  _save(r, state, step, epoch_sums)
  logging.info("Process %d saved step %d on preemption", jax.process_index(), step)
  r.progress.clear()
  reporting.print_line(f"Preempted: saved step {step} (epoch {step // r.plan.steps_per_epoch + 1}"
                       f") in {r.workdir}; rerun the same command to resume.")


def _finish(r: _Run, state, results: dict) -> None:
  """After the last epoch: evaluation on 'val' and 'test', and the task's own results."""
  if r.evaluate is not None:
    for name in ("val", "test"):
      if name in r.splits:
        results[name] = evaluate_split(r.evaluate, state, r.splits[name])
  if r.history:
    results["final_epoch"] = r.history[-1]
  if r.task.finish is not None:
    results.update(r.task.finish(state, r.history, results))


def _display_order(key: str) -> tuple:
  """Keras's order: training metrics then validation ones, losses first within each."""
  return (key.startswith("val_"), "loss" not in key, key)


def _kept(ckpts) -> str:
  step = ckpts.latest_step()
  return (f"The last good checkpoint (step {step}) is kept" if step is not None
          else "No checkpoint was saved before it")


def _raise_if_bad(bad, ckpts) -> None:
  bad = int(bad)
  if bad >= 0:
    raise NonFiniteError(f"Non-finite loss or metric at step {bad}; stopped. {_kept(ckpts)}; "
                         "lower the learning rate or check the data.")


def _raise_if_nonfinite_eval(record: dict, step: int, ckpts) -> None:
  for k, v in record.items():
    if isinstance(v, float) and not np.isfinite(v):
      raise NonFiniteError(f"{k} is {v} after step {step}; stopped. {_kept(ckpts)}.")
