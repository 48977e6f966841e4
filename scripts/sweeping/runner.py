"""The local runner: members as subprocesses side by side, each claimed by a marker so that a
second driver never doubles it, stopped with SIGTERM (so they checkpoint) with the driver."""

import concurrent.futures
import ctypes
import json
import os
import queue
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time

from etils import epath

from common.run.workdir_lock import pid_alive
from scripts.sweeping.members import REPO, Job, describe_changes, finished


PREPARE = """
import json, sys
import ml_collections
from common.data import datasets
datasets.prepare(ml_collections.ConfigDict(json.loads(sys.argv[1])))
"""


def prepare_datasets(configs) -> bool:
  """Prepares each TFDS dataset the members read, once, before members run side by side (two
  members preparing the same dataset at once collide). Returns False if preparation failed."""
  from common.data import datasets  # pylint: disable=g-import-not-at-top
  wanted = {}
  for c in configs:
    if c.dataset in datasets.GENERATED:
      continue
    data_dir = epath.Path(datasets.data_dir(c))
    try:
      if any(data_dir.glob(f"{c.dataset}/*/dataset_info.json")):
        continue
    except Exception:  # pylint: disable=broad-except
      pass  # unreadable: let common.data.datasets.prepare say why
    wanted[(c.dataset, c.data_dir, c.manual_dir)] = c
  for (dataset, _, _), c in wanted.items():
    print(f"Preparing dataset {dataset} before starting members in parallel...", flush=True)
    spec = c.to_json_best_effort()
    r = subprocess.run([sys.executable, "-c", PREPARE, spec], cwd=REPO, capture_output=True,
                       text=True)
    if r.returncode:
      print(f"Error preparing {dataset}:\n" + "\n".join((r.stdout + r.stderr).splitlines()[-10:]),
            file=sys.stderr)
      return False
  return True


HOST = socket.gethostname()


_PR_SET_PDEATHSIG = 1
try:
  _LIBC = ctypes.CDLL(None, use_errno=True) if sys.platform.startswith("linux") else None
except OSError:
  _LIBC = None


def die_with_parent(parent: int):
  """A preexec_fn: the member gets SIGTERM (and saves a checkpoint) when the sweep driver dies,
  even by kill -9. Linux only; elsewhere members outlive a killed driver."""
  def preexec():
    if _LIBC is not None:
      _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
      if os.getppid() != parent:  # the driver died before prctl took effect
        os.kill(os.getpid(), signal.SIGTERM)
  return preexec


def _read_owner(path) -> dict | None:
  try:
    info = json.loads(epath.Path(path).read_text())
  except Exception:  # pylint: disable=broad-except  # missing, half-written or unreadable
    return None
  return info if isinstance(info, dict) else None


def live_owner(job: Job) -> dict | None:
  """The live process on this host already running job's member, from SWEEP_DIR/<member>/.running
  (written by a sweep driver) or <workdir>/.lock (held by the run itself), else None."""
  for path in (job.marker, epath.Path(job.workdir) / ".lock"):
    info = _read_owner(path)
    if info and info.get("host") == HOST and info.get("pid") != os.getpid() and pid_alive(
        info.get("pid")):
      return info
  return None


def claim(job: Job) -> dict | None:
  """Takes job's .running marker for this driver; returns the live owner instead if another
  process (a second driver, or the run itself) already runs the member."""
  os.makedirs(os.path.dirname(job.marker), exist_ok=True)
  for _ in range(3):
    try:
      fd = os.open(job.marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
      owner = live_owner(job)
      if owner:
        return owner
      info = _read_owner(job.marker)
      if info is None and time.time() - _mtime(job.marker) < 5:
        time.sleep(0.5)  # another driver is writing it right now
        continue
      try:
        os.remove(job.marker)  # stale: its process is gone
      except FileNotFoundError:
        pass
      continue
    with os.fdopen(fd, "w") as f:
      json.dump({"pid": os.getpid(), "host": HOST, "start": time.time(), "driver": os.getpid()}, f)
    owner = live_owner(job)  # the run's own .lock, e.g. a run started by hand
    if owner and owner.get("driver") != os.getpid():
      release(job)
      return owner
    return None
  return live_owner(job) or {"pid": None, "host": HOST}


def _mtime(path: str) -> float:
  try:
    return os.path.getmtime(path)
  except OSError:
    return 0.0


def mark_running(job: Job, pid: int) -> None:
  tmp = f"{job.marker}.{os.getpid()}"
  with open(tmp, "w") as f:
    json.dump({"pid": pid, "host": HOST, "start": time.time(), "driver": os.getpid(),
               "cmd": job.cmd}, f)
  os.replace(tmp, job.marker)


def release(job: Job) -> None:
  info = _read_owner(job.marker)
  if info and info.get("driver") == os.getpid():
    try:
      os.remove(job.marker)
    except FileNotFoundError:
      pass


def archive_changed(jobs: list[Job]) -> None:
  """Moves each changed member's old run aside (never deleting) so that it runs afresh; a member
  running elsewhere right now is left alone."""
  from common.run import runs  # pylint: disable=g-import-not-at-top
  for job in jobs:
    owner = live_owner(job)
    if owner:
      job.status = "running"
      print(f"  skip {job.name} (its config changed, but it is running: pid {owner.get('pid')})")
      continue
    path = runs.archive_run(job.workdir)
    print(f"  {job.name}: config changed ({describe_changes(job.changed)}); old run moved to "
          f"{path}; runs afresh", flush=True)


class Runner:
  """Runs jobs as subprocesses, at most `parallel` at a time; Ctrl-C or SIGTERM stops them with
  SIGTERM (each run then saves a checkpoint, and rerunning the sweep resumes it), and so does the
  driver's death (PR_SET_PDEATHSIG). A member already running here (a live pid in its .running
  marker or its workdir's .lock) is skipped. With `slots` (TPU slices), each job takes a free slot
  and `command(job, slot)` builds its command; at most one job runs per slot."""

  def __init__(self, jobs: list[Job], parallel: int, tail: int, slots: list[str] | None = None,
               command=None):
    self.jobs, self.tail = jobs, tail
    self.parallel = len(slots) if slots else max(1, parallel)
    self.command = command
    self.free = None
    if slots:
      self.free = queue.Queue()
      for slot in slots:
        self.free.put(slot)
    self.lock = threading.Lock()
    self.running: dict[str, subprocess.Popen] = {}
    self.stopping = False
    self.done_count = 0

  def say(self, text: str) -> None:
    with self.lock:
      print(text, flush=True)

  def run_one(self, job: Job) -> Job:
    if self.stopping:
      job.status = "interrupted"
      return job
    owner = claim(job)
    if owner:
      job.status = "running"
      self.say(f"  skip {job.name} (already running: pid {owner.get('pid')} on "
               f"{owner.get('host')})")
      return job
    slot = None
    try:
      if self.free is not None:
        slot = self.free.get()
        job.slot = slot
        job.cmd = self.command(job, slot)
      if self.stopping:
        job.status = "interrupted"
        return job
      return self._run(job)
    finally:
      if slot is not None:
        self.free.put(slot)
      release(job)

  def _run(self, job: Job) -> Job:
    start = time.perf_counter()
    with open(job.log, "a") as log:
      log.write(f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} {shlex.join(job.cmd)}\n")
      log.flush()
      with self.lock:
        # Its own session: a terminal's Ctrl-C reaches the driver only, which forwards SIGTERM.
        proc = subprocess.Popen(job.cmd, stdout=log, stderr=subprocess.STDOUT, cwd=REPO,
                                stdin=subprocess.DEVNULL, start_new_session=True,
                                preexec_fn=die_with_parent(os.getpid()),
                                env=dict(os.environ, PYTHONUNBUFFERED="1"))  # a live log
        self.running[job.name] = proc
      mark_running(job, proc.pid)
      self.say(f"  start {job.name}" + (f" on {job.slot}" if job.slot else ""))
      job.returncode = proc.wait()
    with self.lock:
      self.running.pop(job.name, None)
      self.done_count += 1
      n = self.done_count
    job.seconds = time.perf_counter() - start
    if job.returncode == 0 and finished(job.workdir):
      job.status = "done"
      self.say(f"[{n}/{len(self.jobs)}] done {job.name} in {job.seconds:.1f}s")
    elif job.returncode == 0 or self.stopping:
      job.status = "interrupted"  # preempted or stopped: a checkpoint was saved
      self.say(f"[{n}/{len(self.jobs)}] stopped {job.name} (rerun to resume)")
    else:
      job.status = "failed"
      self.say(f"[{n}/{len(self.jobs)}] FAILED {job.name} (exit code {job.returncode}) in "
               f"{job.seconds:.1f}s; log: {job.log}")
    return job

  def stop(self, *_):
    self.stopping = True
    with self.lock:
      for proc in self.running.values():
        if proc.poll() is None:
          proc.send_signal(signal.SIGTERM)

  def run(self) -> None:
    previous = signal.signal(signal.SIGTERM, self.stop)
    pool = concurrent.futures.ThreadPoolExecutor(self.parallel)
    try:
      futures = [pool.submit(self.run_one, job) for job in self.jobs]
      while not all(f.done() for f in futures):
        time.sleep(0.2)
    except KeyboardInterrupt:
      self.say("Interrupted: asking running members to save a checkpoint and stop...")
      self.stop()
    finally:
      pool.shutdown(wait=True)
      signal.signal(signal.SIGTERM, previous)


def log_tail(path: str, lines: int) -> str:
  try:
    with open(path, errors="replace") as f:
      text = f.read()
  except OSError:
    return "(no log)"
  last = text.rsplit("\n=== ", 1)[-1]  # this attempt only
  return "\n".join(last.rstrip("\n").splitlines()[-lines:])
