"""Orbax checkpoints for exact resume and their faults, and preemption (SIGTERM, Ctrl-C)."""

import contextlib
import datetime
import json
import logging as logging_lib
import os
import signal
import sys
import threading

import jax
import numpy as np
import orbax.checkpoint as ocp
from etils import epath
from absl import logging
from jax.experimental import multihost_utils

from common.run import reporting


LATEST, BEST = "checkpoints", "best_checkpoint"  # folders of the workdir


def _checkpoints_dir(workdir: str, folder: str = LATEST) -> epath.Path:
  """workdir/folder; a local workdir made absolute, which orbax requires."""
  return epath.Path(workdir if "://" in workdir else os.path.abspath(workdir)) / folder


class CheckpointError(RuntimeError):
  """A checkpoint that could not be written, or none intact to restore; one line says what to do."""


DAMAGED_DIR = "checkpoints_damaged"
# Sizes of a committed checkpoint's files (local filesystems), so truncation is found cheaply.
SIZES_FILE = "files.json"


class Checkpoints:
  """The run's state and a JSON 'meta' record, saved together under workdir/checkpoints.

  save() is synchronous (orbax's async checkpointing is off: the next epoch's compute waits for
  the write) and raises CheckpointError if the checkpoint was not committed (disk full,
  permissions): the run stops at once, before a later save could garbage-collect the last good
  checkpoint. A damaged step folder (parts missing, a file whose size changed since it was
  saved, or one that fails to restore while an older one restores) is skipped with a warning
  and, by process 0 unless read_only, moved to workdir/checkpoints_damaged/<step>-<time>/, never
  deleted; restore() falls back to the newest intact checkpoint. Folders found damaged on
  construction (everything but a truncation in a checkpoint without SIZES_FILE, e.g. on gs://)
  are never listed by latest_step().
  """

  def __init__(self, workdir: str, max_to_keep: int, *, read_only: bool = False,
               folder: str = LATEST):
    self.workdir = workdir
    self.directory = _checkpoints_dir(workdir, folder)
    self.read_only = read_only
    self.skipped: dict[int, str] = {}  # damaged steps, and why
    self.restored_step: int | None = None
    self._failed = False
    self._set_aside_damaged()
    with _quiet_orbax(logging_lib.WARNING):  # it warns of folders that _set_aside has skipped
      options = ocp.CheckpointManagerOptions(
          max_to_keep=None if read_only else max_to_keep, create=not read_only,
          read_only=read_only, cleanup_tmp_directories=not read_only,  # partial writes of a crash
          enable_async_checkpointing=False)
      self.manager = ocp.CheckpointManager(self.directory, options=options,
                                           item_names=("state", "meta"))

  def latest_step(self) -> int | None:
    steps = self._steps()
    return steps[0] if steps else None

  def _steps(self, at_most: int | None = None) -> list[int]:
    """Steps not known to be damaged, newest first."""
    return sorted((s for s in self.manager.all_steps() if s not in self.skipped
                   and (at_most is None or s <= at_most)), reverse=True)

  def save(self, step: int, state, meta: dict) -> None:
    """Writes and commits a checkpoint; CheckpointError if it could not (the previous one stays)."""
    previous = self.latest_step()
    error = None
    try:
      with _quiet_orbax():
        self.manager.save(step, args=ocp.args.Composite(
            state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)), force=True)
        self.manager.wait_until_finished()
        self.manager.check_for_errors()
      folder = self.directory / str(step)
      # orbax only logs some failed writes, so check that the step folder is whole too.
      error = _damage(folder) if folder.exists() else "it was not committed"
      if error is None and jax.process_index() == 0:
        _record_sizes(folder)
    except Exception as e:  # pylint: disable=broad-except
      error, cause = _cause(e), e
    else:
      cause = None
    if not _all_agree(error is None):
      self._failed = True
      _silence_aborted_io()
      kept = (f"from the last good checkpoint (step {previous})" if previous is not None
              else "(no checkpoint was saved yet)")
      raise CheckpointError(
          f"Could not write checkpoint {self.directory / str(step)} "
          f"({error or 'failed on another process'}): free space or fix permissions, then rerun "
          f"the same command to resume {kept}.") from cause

  def restore(self, like_state, step: int | None = None):
    """(state, meta) of the newest intact checkpoint at or below `step` (default: the latest).

    Restores with the shapes, dtypes and shardings of `like_state`; sets self.restored_step.
    A checkpoint that fails while an older one restores is damaged: it is skipped with a warning
    (and moved aside, see the class docstring). If none restores, nothing is moved: the cause
    may be a change of code or config rather than damage.
    """
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, like_state)
    failed = {}
    for s in self._steps(step):
      out, error = None, None
      try:
        with _quiet_orbax():
          out = self.manager.restore(s, args=ocp.args.Composite(
              state=ocp.args.StandardRestore(abstract), meta=ocp.args.JsonRestore()))
      except Exception as e:  # pylint: disable=broad-except
        error = _cause(e)
        _silence_aborted_io()
      if _all_agree(error is None):
        self._set_aside(failed)
        self.restored_step = s
        return out.state, out.meta
      failed[s] = error or "failed on another process"
    if not failed:
      raise CheckpointError(f"No checkpoint in {self.directory}: train there first.")
    raise CheckpointError(
        f"No checkpoint in {self.directory} could be restored ({_describe(failed)}): if its files "
        "are damaged, move that folder aside to start afresh; if the code or config changed, "
        "use another --workdir.")

  def close(self) -> None:
    try:
      with _quiet_orbax():
        self.manager.wait_until_finished()
        self.manager.close()
    except Exception as e:  # pylint: disable=broad-except
      if not self._failed:  # else save() has already reported it
        raise CheckpointError(f"Could not finish writing checkpoints in {self.directory} "
                              f"({_cause(e)}).") from e

  def _set_aside_damaged(self) -> None:
    """Finds damaged step folders before orbax lists them; refuses if none is intact."""
    steps = _step_folders(self.directory)
    damaged = {s: why for s, folder in steps.items() if (why := _damage(folder))}
    if damaged and len(damaged) == len(steps):
      raise CheckpointError(
          f"No intact checkpoint in {self.directory} ({_describe(damaged)}): move that folder "
          "aside to start afresh, or use another --workdir.")
    self._set_aside(damaged, reload=False)

  def _set_aside(self, damaged: dict[int, str], reload: bool = True) -> None:
    """Skips damaged steps; process 0 moves them to checkpoints_damaged/ unless read_only."""
    if not damaged:
      return
    self.skipped.update(damaged)
    move = not self.read_only and jax.process_index() == 0
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    for step, why in sorted(damaged.items()):
      where = "skipped it"
      if move:
        dest = self.directory.parent / DAMAGED_DIR / f"{step}-{stamp}"
        try:
          dest.parent.mkdir(parents=True, exist_ok=True)
          (self.directory / str(step)).rename(dest)
          where = f"moved it to {dest}"
        except OSError as e:
          where = f"skipped it (could not move it: {e.strerror or e})"
      logging.warning("Checkpoint %s is damaged (%s); %s.", self.directory / str(step), why, where)
    if not self.read_only and jax.process_count() > 1:
      multihost_utils.sync_global_devices("checkpoints_set_aside")
    if reload:
      self.manager.reload()


def _step_folders(directory: epath.Path) -> dict[int, epath.Path]:
  if not directory.is_dir():
    return {}
  return {int(p.name): p for p in directory.iterdir() if p.name.isdigit() and p.is_dir()}


def _damage(folder: epath.Path) -> str | None:
  """Why a step folder is not a whole checkpoint (from listings and small reads), or None.

  Our own over orbax's: orbax only tells a committed step from an uncommitted one (its temporary
  folders); a committed step later cut short or partly deleted restores with an error or wrong
  values, so the parts orbax writes (_METADATA, each OCDBT manifest, meta) are checked here."""
  if not any(folder.iterdir()):
    return "empty folder"
  for part in ("state", "meta"):
    if not (folder / part).is_dir():
      return f"{part}/ missing"
  state = folder / "state"
  if not (state / "_METADATA").exists():
    return "state/_METADATA missing"
  ocdbt = [p for p in state.iterdir() if p.name.startswith("ocdbt.process_")]
  for d in ([state] + ocdbt) if ocdbt else []:  # an OCDBT checkpoint: one manifest per level
    if not (d / "manifest.ocdbt").exists():
      return f"{os.path.relpath(str(d / 'manifest.ocdbt'), str(folder))} missing"
  try:
    json.loads((folder / "meta" / "metadata").read_text())
  except (OSError, ValueError):
    return "meta/metadata missing or unreadable"
  return _size_change(folder)


def _size_change(folder: epath.Path) -> str | None:
  """A file missing or resized since the save, per SIZES_FILE (local filesystems only)."""
  record = folder / SIZES_FILE
  if "://" in str(folder) or not record.exists():
    return None
  try:
    sizes = json.loads(record.read_text())
  except ValueError:  # cut short by a crash just after the save: no sizes to check
    return None
  for rel, size in sizes.items():
    try:
      actual = os.path.getsize(os.path.join(folder, rel))
    except OSError:
      return f"{rel} missing"
    if actual != size:
      return f"{rel} is {actual} bytes, was saved as {size}"
  return None


def _record_sizes(folder: epath.Path) -> None:
  if "://" in str(folder):
    return
  sizes = {os.path.relpath(os.path.join(root, f), folder): os.path.getsize(os.path.join(root, f))
           for root, _, files in os.walk(folder) for f in files if f != SIZES_FILE}
  reporting.atomic_write_text(folder / SIZES_FILE, json.dumps(sizes, sort_keys=True))


def _all_agree(ok: bool) -> bool:
  """Whether `ok` holds on every process (a tiny collective when there are several)."""
  if jax.process_count() > 1:
    return bool(np.all(multihost_utils.process_allgather(np.int32(ok))))
  return ok


_OS_ERRORS = ("No space left on device", "Permission denied", "Read-only file system",
              "Disk quota exceeded")


def _cause(e: BaseException) -> str:
  """A short cause: an OS error inside `e` (e.g. 'No space left on device'), else the first line
  of the innermost exception, which names the file and what is wrong with it."""
  chain = []
  while e is not None and len(chain) < 20:
    chain.append(e)
    e = e.__cause__ or e.__context__
  for x in chain:
    if isinstance(x, OSError) and x.strerror:
      return x.strerror
    known = [k for k in _OS_ERRORS if k in str(x)]
    if known:
      return known[0]
  lines = str(chain[-1]).strip().splitlines()
  return f"{type(chain[-1]).__name__}: {lines[0][:300]}" if lines else type(chain[-1]).__name__


def _describe(failed: dict[int, str]) -> str:
  return "; ".join(f"step {s}: {why[:200]}" for s, why in sorted(failed.items(), reverse=True))


class _OrbaxFilter(logging_lib.Filter):
  """Drops orbax's own logs from `level` up (errors come with tracebacks): we report in one line."""

  def __init__(self, level: int, text: str = ""):
    super().__init__()
    self.level = level
    self.text = text

  def filter(self, record) -> bool:
    if self.text:
      return not (record.levelno >= self.level and self.text in record.getMessage())
    return not ("orbax" in record.pathname and record.levelno >= self.level)


def _silence_aborted_io() -> None:
  """After a failed read or write, orbax's leftover tasks report the same error again as they end
  (its logs, asyncio's, and tensorstore callbacks into orbax's closed event loop), at any later
  time: drop those for the rest of the process; the failure itself is reported in one line.
  Process-wide because orbax offers no way to cancel or await those tasks; the hook passes on
  everything that is not orbax's."""
  global _silenced
  if _silenced:
    return
  _silenced = True
  logging_lib.getLogger("absl").addFilter(_OrbaxFilter(logging_lib.ERROR))
  logging_lib.getLogger("asyncio").addFilter(_OrbaxFilter(logging_lib.ERROR, "never retrieved"))
  sys.unraisablehook = _without_orbax_leftovers(sys.unraisablehook)


_silenced = False


def _without_orbax_leftovers(previous):
  """An unraisablehook that drops what orbax's aborted reads and writes leave behind."""

  def hook(unraisable):
    code = getattr(unraisable.object, "cr_code", None)
    if not ("Event loop is closed" in str(unraisable.exc_value)
            or (code is not None and "orbax" in code.co_filename)):
      previous(unraisable)

  return hook


@contextlib.contextmanager
def _quiet_orbax(level: int = logging_lib.ERROR):
  handler_filter = _OrbaxFilter(level)
  logger = logging_lib.getLogger("absl")
  logger.addFilter(handler_filter)
  previous_hook = sys.unraisablehook
  sys.unraisablehook = _without_orbax_leftovers(previous_hook)
  try:
    yield
  finally:
    logger.removeFilter(handler_filter)
    if not _silenced:
      sys.unraisablehook = previous_hook


class Preemption:
  """Notices SIGTERM (how a Cloud TPU VM announces preemption) and Ctrl-C (SIGINT), so the loop
  can save and exit; a second Ctrl-C raises KeyboardInterrupt at once, without saving.

  Each process's own signal handler sets its flag; with several processes, every call gathers
  all the flags (a tiny collective), so all processes stop at the same call once any of them was
  signalled. (JAX's preemption sync service does this too, but in tests under load it sometimes
  never reported a SIGTERM; the gather always sees it.) close() restores the previous handlers.
  """

  def __init__(self):
    self.requested = False
    self._interrupted = False
    self._previous = {}
    if _in_main_thread():
      for sig in (signal.SIGTERM, signal.SIGINT):
        if sig == signal.SIGINT and signal.getsignal(sig) == signal.SIG_IGN:
          continue  # a background job that ignores Ctrl-C keeps ignoring it
        self._previous[sig] = signal.signal(sig, self._handle)

  def _handle(self, signum, frame):  # pylint: disable=unused-argument
    if signum == signal.SIGINT:
      if self._interrupted:
        raise KeyboardInterrupt
      self._interrupted = True
      sys.stderr.write("\nCtrl-C: saving a checkpoint at the next chunk boundary; press Ctrl-C "
                       "again to stop without saving.\n")
    self.requested = True

  def reached(self, step: int) -> bool:  # pylint: disable=unused-argument
    """Whether to save and stop now; every process gets the same answer at the same call."""
    if jax.process_count() > 1:
      votes = multihost_utils.process_allgather(np.int32(self.requested))
      return bool(np.any(votes))
    return self.requested

  def close(self) -> None:
    for sig, previous in self._previous.items():
      signal.signal(sig, previous if previous is not None else signal.SIG_DFL)
    self._previous = {}


def _in_main_thread() -> bool:
  return threading.current_thread() is threading.main_thread()
