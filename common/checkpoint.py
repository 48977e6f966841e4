"""Orbax checkpoints for exact resume, the workdir's config guard, and preemption (SIGTERM)."""

import datetime
import json
import os
import signal
import threading

import jax
import numpy as np
import orbax.checkpoint as ocp
from etils import epath
from jax.experimental import multihost_utils

from common import config as cfg

# Keys that may change between a run and its resumption without changing what is computed.
RESUMABLE_KEYS = ("num_epochs", "data_dir", "manual_dir", "steps_per_call",
                  "checkpoint_every_epochs", "max_checkpoints", "eval_every_epochs",
                  "classifier_workdir", "sample_every_epochs", "progress_bar",
                  "data_placement")


class WorkdirError(RuntimeError):
  """A workdir that holds a different run; the message lists what differs and what to do."""


def check_workdir(workdir: str, config_dict: dict, fresh: bool) -> None:
  """Refuses a workdir whose checkpoints come from another config; with fresh, archives them."""
  wd = epath.Path(workdir)
  saved_path = wd / "config.json"
  has_checkpoints = (wd / "checkpoints").exists() and any((wd / "checkpoints").iterdir())
  if not saved_path.exists() or not has_checkpoints:
    return
  diffs = cfg.differences(json.loads(saved_path.read_text()), config_dict, RESUMABLE_KEYS)
  if not diffs:
    return
  if not fresh:
    raise WorkdirError(
        f"Workdir {workdir} holds checkpoints of a different config ({len(diffs)} fields differ: "
        + "; ".join(diffs) + "). Use another --workdir, or pass --fresh to archive the old run "
        "and start afresh.")
  if jax.process_index() == 0:
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    archive = wd / "archive" / stamp
    archive.mkdir(parents=True)
    for child in wd.iterdir():
      if child.name != "archive":
        child.rename(archive / child.name)
  multihost_utils.sync_global_devices("archive_workdir")


def _checkpoints_dir(workdir: str) -> epath.Path:
  """workdir/checkpoints; a local workdir made absolute, which orbax requires."""
  return epath.Path(workdir if "://" in workdir else os.path.abspath(workdir)) / "checkpoints"


class Checkpoints:
  """The run's state and a JSON 'meta' record, saved together under workdir/checkpoints."""

  def __init__(self, workdir: str, max_to_keep: int):
    self.manager = ocp.CheckpointManager(
        _checkpoints_dir(workdir),
        options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True),
        item_names=("state", "meta"))

  def latest_step(self) -> int | None:
    return self.manager.latest_step()

  def save(self, step: int, state, meta: dict) -> None:
    self.manager.save(step, args=ocp.args.Composite(
        state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)), force=True)

  def restore(self, like_state, step: int | None = None):
    """Restores (state, meta) with the shapes, dtypes and shardings of `like_state`."""
    step = self.latest_step() if step is None else step
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, like_state)
    out = self.manager.restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(abstract), meta=ocp.args.JsonRestore()))
    return out.state, out.meta

  def close(self) -> None:
    self.manager.wait_until_finished()
    self.manager.close()


def restore_latest(workdir: str, like_state):
  """(state, meta, step) of the latest checkpoint in workdir, for sampling and evaluation."""
  directory = _checkpoints_dir(workdir)
  if not directory.exists():
    raise FileNotFoundError(f"No checkpoint in {workdir}: train there first.")
  ckpts = Checkpoints(workdir, max_to_keep=10**6)
  step = ckpts.latest_step()
  if step is None:
    raise FileNotFoundError(f"No checkpoint in {workdir}: train there first.")
  state, meta = ckpts.restore(like_state, step)
  ckpts.close()
  return state, meta, step


class Preemption:
  """Notices SIGTERM (how a Cloud TPU VM announces preemption) so the loop can save and exit.

  Each process's own signal handler sets its flag; with several processes, every call gathers
  all the flags (a tiny collective), so all processes stop at the same call once any of them was
  signalled. (JAX's preemption sync service does this too, but in tests under load it sometimes
  never reported a SIGTERM; the gather always sees it.)
  """

  def __init__(self):
    self.requested = False
    self._previous = None
    if _in_main_thread():
      self._previous = signal.signal(signal.SIGTERM, self._handle)

  def _handle(self, signum, frame):  # pylint: disable=unused-argument
    self.requested = True

  def reached(self, step: int) -> bool:  # pylint: disable=unused-argument
    """Whether to save and stop now; every process gets the same answer at the same call."""
    if jax.process_count() > 1:
      votes = multihost_utils.process_allgather(np.int32(self.requested))
      return bool(np.any(votes))
    return self.requested

  def close(self) -> None:
    if self._previous is not None:
      signal.signal(signal.SIGTERM, self._previous)


def _in_main_thread() -> bool:
  return threading.current_thread() is threading.main_thread()
