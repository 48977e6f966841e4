"""Orbax checkpoints for exact resume, and preemption (SIGTERM)."""

import os
import signal
import threading

import jax
import numpy as np
import orbax.checkpoint as ocp
from etils import epath
from jax.experimental import multihost_utils


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
