"""One run per workdir: a lock file <workdir>/.lock that process 0 holds while the run lasts.

The lock is JSON: {"pid", "host", "start" (ISO time), "argv"}, plus "heartbeat" (ISO time and
"heartbeat_unix"), "boot" (this host's boot id) and a random "token" telling holders apart.
It is created before anything else is written to the workdir and removed on exit, also on
errors. A lock left behind by a run that died is stale and is taken over with a warning:

- Local or shared (NFS) filesystem: created with O_CREAT|O_EXCL, so only one run can get it. A
  lock from this host is stale when its pid is gone (or the host rebooted since it was made); a
  lock from another host, whose pid can't be checked, is stale when its heartbeat is older than
  STALE_S.
- gs:// (cloud storage): there is no exclusive create, so this is best effort: the lock is
  written when absent and read back after GCS_SETTLE_S; two runs starting within that moment may
  both proceed. Staleness there is by heartbeat only (or the pid, for a lock from this host).

The holder refreshes the heartbeat every HEARTBEAT_S from a daemon thread.
"""

import contextlib
import datetime
import json
import os
import secrets
import socket
import sys
import threading
import time

import jax
import numpy as np
from absl import logging
from etils import epath
from jax.experimental import multihost_utils

from common.run import reporting

LOCK_NAME = ".lock"
HEARTBEAT_S = 30.0
STALE_S = 300.0
GCS_SETTLE_S = 2.0


class WorkdirLockError(RuntimeError):
  """The workdir is in use by another run, or can't be written; the message says what to do."""


@contextlib.contextmanager
def hold(workdir: str, argv: list[str] | None = None):
  """Holds workdir's lock in the with-block: process 0 takes it; all processes raise if refused."""
  lock, error = None, None
  if jax.process_index() == 0:
    try:
      lock = Lock.acquire(workdir, argv)
    except WorkdirLockError as e:
      error = e
  if jax.process_count() > 1:
    ok = int(multihost_utils.broadcast_one_to_all(np.int32(error is None)))
    if not ok and error is None:
      error = WorkdirLockError(f"Workdir {workdir} is in use or can't be written; process 0 "
                               "says why.")
  if error is not None:
    raise error
  try:
    yield lock
  finally:
    if lock is not None:
      lock.release()


class Lock:
  """A held lock; refreshes its heartbeat until release()."""

  def __init__(self, path: epath.Path, record: dict):
    self.path = path
    self.record = record
    self._stop = threading.Event()
    self._thread = threading.Thread(target=self._beat, name="workdir-lock-heartbeat", daemon=True)
    self._thread.start()

  @classmethod
  def acquire(cls, workdir: str, argv: list[str] | None = None, tries: int = 3) -> "Lock":
    """Takes workdir's lock, taking over a stale one; WorkdirLockError if it is held."""
    path = _make_workdir(workdir) / LOCK_NAME
    record = _new_record(argv)
    for _ in range(tries):
      if _create(path, record, workdir):
        return cls(path, record)
      held = _read(path)
      if held is None:  # released meanwhile
        continue
      why = stale_reason(held)
      if why is None:
        raise WorkdirLockError(in_use_message(workdir, held))
      logging.warning("Taking over the lock of workdir %s from pid %s on host %s: %s.", workdir,
                      held.get("pid", "?"), held.get("host", "?"), why)
      _take_away(path, held)
    raise WorkdirLockError(f"Workdir {workdir}: its lock changed hands {tries} times while this "
                           "run tried to take it; another run is starting there. Wait and rerun.")

  def _beat(self) -> None:
    while not self._stop.wait(HEARTBEAT_S):
      try:
        self.refresh()
      except Exception as e:  # pylint: disable=broad-except
        logging.warning("Could not refresh the workdir lock %s: %s", self.path, e)

  def refresh(self) -> None:
    """Writes a new heartbeat, unless another run has taken the lock (then stops refreshing).

    Locally the heartbeat goes, in place, into the very file whose token was read: a takeover
    always makes a new file, so a run taken over between the read and the write can't overwrite
    the new holder's lock."""
    with _open_lock(self.path) as (held, write):
      if held is not None and held.get("token") != self.record["token"]:
        logging.warning("The workdir lock %s was taken by pid %s on host %s; no longer "
                        "refreshing it.", self.path, held.get("pid", "?"), held.get("host", "?"))
        self._stop.set()
        return
      self.record.update(_heartbeat())
      if held is None:  # moved away (e.g. archived with the run): make it again
        _create(self.path, self.record, str(self.path.parent))
      else:
        write(json.dumps(self.record))

  def release(self) -> None:
    """Removes the lock if it is still this run's; a new holder's lock stays."""
    self._stop.set()
    self._thread.join(timeout=10)
    if reporting.is_local(self.path):  # taken aside, then put back unless it is ours: atomic locally
      _take_away(self.path, self.record)
      return
    held = _read(self.path)
    if held is not None and held.get("token") == self.record["token"]:
      with contextlib.suppress(FileNotFoundError):
        self.path.unlink()


def in_use_message(workdir: str, held: dict) -> str:
  text = (f"Workdir {workdir} is in use by pid {held.get('pid', '?')} on host "
          f"{held.get('host', '?')} since {held.get('start', _iso(held.get('mtime', 0)))}; "
          "wait for it or stop it.")
  if held.get("host") not in (None, socket.gethostname()):
    text += f" (A lock whose heartbeat stops is taken over after {STALE_S:.0f} s.)"
  return text


def stale_reason(held: dict, now: float | None = None) -> str | None:
  """Why a lock read from disk is stale (see the module docstring), or None if it is held."""
  now = time.time() if now is None else now
  if "pid" not in held:  # cut short while being written, or not ours
    age = now - held.get("mtime", now)
    return f"unreadable lock file {age:.0f} s old" if age > STALE_S else None
  pid = held["pid"]
  if held.get("host") == socket.gethostname():
    if held.get("boot") and _boot_id() and held["boot"] != _boot_id():
      return f"pid {pid} ran before this host last booted"
    return None if pid_alive(pid) else f"pid {pid} is no longer running"
  age = now - float(held.get("heartbeat_unix", 0))
  return f"no heartbeat for {age:.0f} s" if age > STALE_S else None


def _make_workdir(workdir: str) -> epath.Path:
  wd = epath.Path(workdir)
  if wd.exists() and not wd.is_dir():
    raise WorkdirLockError(f"Workdir {workdir} is a file, not a folder: pass another --workdir.")
  try:
    wd.mkdir(parents=True, exist_ok=True)
  except OSError as e:
    raise WorkdirLockError(f"Cannot create workdir {workdir} ({e.strerror or e}): fix its parent "
                           "folder or pass another --workdir.") from e
  return wd


def _create(path: epath.Path, record: dict, workdir: str) -> bool:
  """Creates the lock holding `record` if absent; False if it exists."""
  text = json.dumps(record)
  try:
    if reporting.is_local(path):
      try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
      except FileExistsError:
        return False
      with os.fdopen(fd, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
      return True
    if path.exists():  # no exclusive create on cloud storage: write, then see who won
      return False
    path.write_text(text)
  except OSError as e:
    raise WorkdirLockError(f"Cannot write to workdir {workdir} ({e.strerror or e}): make it "
                           "writable or pass another --workdir.") from e
  time.sleep(GCS_SETTLE_S)
  held = _read(path)
  return held is not None and held.get("token") == record["token"]


def _take_away(path: epath.Path, held: dict) -> None:
  """Removes the lock `held` (a stale one, or this run's own); locally by renaming it first, so
  that a lock another run has just made in its place is put back rather than removed."""
  if not reporting.is_local(path):
    try:
      path.unlink()
    except FileNotFoundError:
      pass
    return
  aside = epath.Path(f"{path}.stale-{os.getpid()}-{secrets.token_hex(4)}")
  try:
    os.rename(path, aside)
  except FileNotFoundError:
    return
  if (_read(aside) or {}).get("token") != held.get("token"):
    with contextlib.suppress(OSError):
      os.link(aside, path)  # fails only if yet another lock is there: then that one stands
  os.remove(aside)


def _read(path: epath.Path) -> dict | None:
  """The lock's record; {"mtime": ...} if unreadable; None if there is no lock."""
  try:
    text = path.read_text()
    mtime = path.stat().mtime
  except FileNotFoundError:
    return None
  return _parse(text, mtime)


def _parse(text: str, mtime: float) -> dict:
  try:
    held = json.loads(text)
  except ValueError:
    held = None
  return held if isinstance(held, dict) and "pid" in held else {"mtime": mtime}


@contextlib.contextmanager
def _open_lock(path: epath.Path):
  """(the lock's record or None, a function writing text into that same lock file).

  Locally the record is read from an open file and the writes go to that file, wherever it has
  been moved meanwhile; on cloud storage the object is read, then replaced."""
  if not reporting.is_local(path):
    yield _read(path), lambda text: _replace(path, text)
    return
  try:
    f = open(path, "r+")  # pylint: disable=consider-using-with
  except FileNotFoundError:
    yield None, None
    return

  def write(text: str) -> None:  # one write, padded with spaces: never a shorter, cut record
    data = text.encode().ljust(os.fstat(f.fileno()).st_size)
    os.pwrite(f.fileno(), data, 0)
    os.fsync(f.fileno())

  with f:
    yield _parse(f.read(), os.fstat(f.fileno()).st_mtime), write


def _replace(path: epath.Path, text: str) -> None:
  if not reporting.is_local(path):
    path.write_text(text)  # an object write is atomic on cloud storage
    return
  tmp = f"{path}.tmp-{os.getpid()}-{secrets.token_hex(4)}"
  with open(tmp, "w") as f:
    f.write(text)
    f.flush()
    os.fsync(f.fileno())
  os.replace(tmp, path)


def _new_record(argv: list[str] | None) -> dict:
  now = time.time()
  return {"pid": os.getpid(), "host": socket.gethostname(), "start": _iso(now),
          "argv": list(sys.argv if argv is None else argv), "boot": _boot_id(),
          "token": secrets.token_hex(8), **_heartbeat(now)}


def _heartbeat(now: float | None = None) -> dict:
  now = time.time() if now is None else now
  return {"heartbeat": _iso(now), "heartbeat_unix": now}


def _iso(t: float) -> str:
  return datetime.datetime.fromtimestamp(t).astimezone().isoformat(timespec="seconds")


def pid_alive(pid) -> bool:
  """Whether pid is a live (not zombie) process on this host."""
  if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0:
    return False
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:
    return True
  try:  # a zombie has exited, though its pid stays until its parent reaps it
    with open(f"/proc/{pid}/stat") as f:
      return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
  except (OSError, IndexError):
    return True


def _boot_id() -> str | None:
  try:
    with open("/proc/sys/kernel/random/boot_id") as f:
      return f.read().strip()
  except OSError:
    return None
