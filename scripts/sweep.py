"""Runs a sweep: every override set x seed as its own run, then one summary table and plot.

    python scripts/sweep.py --config=configs/acgan.py:cpu --sweep=ablation --parallel=2 --seeds=2
    python scripts/sweep.py --config=configs/cnn_seed.py:cpu --grid optimizer.learning_rate=0.3,1.0,3.0
    python scripts/sweep.py --config=configs/gan.py:cpu --sweep=losses --dry-run
    python scripts/sweep.py --config=configs/wgan_gp.py --sweep=ablation --launcher=tpu \\
        --tpu-name=gan1,gan2 --tpu-zone=us-west4-a --workdir=gs://BUCKET/sweeps/wgan_gp
    python scripts/sweep.py --config=configs/acgan.py --sweep=ablation --launcher=slurm \\
        --workdir=/shared/sweeps/acgan --slurm-arg=--time=04:00:00 --slurm-arg=--gpus-per-node=8

--sweep is a name the config file's get_sweep(name) knows, FILE.py:NAME (get_sweep in another file)
or FILE.json (a list of override dicts); --grid key=v1,v2 adds a product axis (alone or on top of
--sweep). --overrides key=value ... applies to every member. Each member runs
`python -m cnn.main|gan.main --config=... --workdir=SWEEP_DIR/MEMBER --config.key=value ...
--config.seed=S` with its output in SWEEP_DIR/MEMBER/log.txt. --config.key=value is the same as
--overrides key=value. Every member's config is validated before any member starts.
Rerunning skips a finished member only when the config its run recorded (WORKDIR/config.json) equals
the one asked for now, and resumes an unfinished one from its checkpoints on the same condition. A
member whose recorded config differs (another --overrides, an edited config file) runs afresh: its
old run is first moved, never deleted, to WORKDIR/archive/<time>/, and the sweep says which keys
changed. Summaries read only results whose recorded config is the one asked for. SWEEP_DIR/sweep.json
records the sweep; a sweep of another config file in the same SWEEP_DIR is refused. A
failing member doesn't stop the others; the script ends with each failure's log tail and exits 1.
Members stop (SIGTERM, so they checkpoint) on Ctrl-C, on SIGTERM and when this driver dies (Linux:
PR_SET_PDEATHSIG); a member whose SWEEP_DIR/MEMBER/.running or WORKDIR/.lock names a live process
on this host is skipped, so a second driver never doubles it.
Then SWEEP_DIR/summary.csv (one row per run), summary_grouped.csv (mean and std over seeds),
summary.md (both, sorted by --metric) and summary.png (the metric against each swept value).
--launcher=tpu runs each member on a TPU slice through scripts/tpu.py, one member per slice at a
time (--tpu-name=a,b,c: several slices side by side). --launcher=slurm writes SWEEP_DIR/slurm/
(members.tsv, array.sbatch, summary.sbatch) and submits one job array over the unfinished runs,
whose tasks requeue themselves when their run stops on SIGTERM, then a summary job after it.
"""

import argparse
import ast
import collections
import concurrent.futures
import csv
import ctypes
import dataclasses
import importlib.util
import json
import math
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
from ml_collections.config_flags import config_path as ml_config_path

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
  sys.path.insert(0, REPO)

from common import sweeps  # pylint: disable=g-import-not-at-top,wrong-import-position

# Result fields left out of summary.md (summary.csv keeps everything).
MD_SKIP = ("step", "final_epoch.epoch", "final_epoch.step", "final_epoch.epoch_time_s",
           "final_epoch.examples_per_sec", "compile_time_s", "train_time_s", "num_params")


@dataclasses.dataclass
class Job:
  member: dict         # overrides (and maybe a label)
  seed: int
  group: str           # the member's name, shared by its seeds
  name: str            # the run's name: group plus seed
  workdir: str         # where the run writes (local or gs://)
  log: str             # local log file
  cmd: list[str] = dataclasses.field(default_factory=list)
  status: str = "pending"  # pending | finished | done | failed | interrupted | running
  returncode: int | None = None
  seconds: float = 0.0
  slot: str | None = None  # --launcher=tpu: the slice it runs on
  config: dict | None = None  # the member's whole config, as the run records it in config.json
  changed: list[str] = dataclasses.field(default_factory=list)  # recorded -> asked-for keys

  @property
  def marker(self) -> str:
    """SWEEP_DIR/<member>/.running (beside log.txt): the pid and host running this member."""
    return os.path.join(os.path.dirname(self.log), ".running")


# ---------------------------------------------------------------------------------------------
# Paths: workdirs may be local or gs://; etils.epath reads both.


def is_url(path: str) -> bool:
  """A gs:// (or other remote) path: members' logs and the sweep's summaries then stay local."""
  return "://" in str(path)


def exists(path) -> bool:
  """Whether path exists; one that can't be read (no credentials, no network) counts as missing."""
  try:
    return epath.Path(path).exists()
  except Exception as e:  # pylint: disable=broad-except
    print(f"Warning: can't read {path} ({type(e).__name__}); counted as not finished.",
          file=sys.stderr)
    return False


def read_json(path):
  return json.loads(epath.Path(path).read_text())


def finished(workdir: str) -> bool:
  return exists(epath.Path(workdir) / "results.json")


def key_table(is_gan: bool):
  """(keys, retired) of the members' kind of run."""
  if is_gan:
    from gan import keys  # pylint: disable=g-import-not-at-top
  else:
    from cnn import keys  # pylint: disable=g-import-not-at-top
  return keys.KEYS, keys.RETIRED


def recorded_differences(job: Job, is_gan: bool) -> list[str] | None:
  """None when the member's workdir holds no run; else the keys whose recorded value differs
  from the config asked for now ([] when it is the same run)."""
  from common import runs  # pylint: disable=g-import-not-at-top
  try:
    keys, retired = key_table(is_gan)
    return runs.recorded_differences(job.workdir, job.config, keys, retired)
  except Exception as e:  # pylint: disable=broad-except  # unreadable (no credentials, network)
    return [f"config.json unreadable ({type(e).__name__})"]


def has_current_results(job: Job, is_gan: bool) -> bool:
  """results.json exists and was made by the config asked for now."""
  return finished(job.workdir) and recorded_differences(job, is_gan) == []


# ---------------------------------------------------------------------------------------------
# Config and sweep


def load_module(path: str, name: str):
  spec = importlib.util.spec_from_file_location(name, path)
  if spec is None or not os.path.exists(path):
    raise SystemExit(f"Error: no such file {path}.")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def split_config_arg(arg: str) -> tuple[str, str]:
  path, _, preset = arg.partition(":")
  return path, preset


def parse_value(text: str):
  try:
    return ast.literal_eval(text)
  except (ValueError, SyntaxError):
    return text


def resolve_members(args, config_module) -> tuple[str, list[dict]]:
  """(sweep name, members) from --sweep and --grid."""
  members, name = [{}], "grid"
  if args.sweep:
    spec = args.sweep
    if spec.endswith(".json"):
      with open(spec) as f:
        members = json.load(f)
      name = os.path.splitext(os.path.basename(spec))[0]
    else:
      module = config_module
      if ".py:" in spec:
        path, spec = spec.rsplit(":", 1)
        module = load_module(path, "sweep_definitions")
      if not hasattr(module, "get_sweep"):
        raise SystemExit(f"Error: {module.__file__} has no get_sweep(name); pass --sweep=FILE.py:NAME,"
                         " --sweep=FILE.json or --grid key=v1,v2.")
      try:
        members = module.get_sweep(spec)
      except ValueError as e:
        raise SystemExit(f"Error: {e}") from None
      name = spec
  if args.grid:
    axes = {}
    for item in args.grid:
      key, sep, values = item.partition("=")
      if not sep or not values:
        raise SystemExit(f"Error: --grid {item!r}: use key=v1,v2,...")
      axes[key] = [parse_value(v) for v in values.split(",")]
    grid = sweeps.product(**axes)
    members = [{**m, **g} for m in members for g in grid]
    if not args.sweep:
      name = "grid"
  if not members:
    raise SystemExit("Error: the sweep has no members.")
  return name, members


def apply_overrides(config, overrides: dict):
  """A copy of config with dotted-key overrides applied, as --config.key=value applies them.

  ml_collections' config_path.set_value is what --config.key=value calls: an int for a float
  field becomes a float, a wrong type raises TypeError, an unknown key KeyError.
  (ConfigDict.update_from_flattened_dict would silently add unknown keys instead.)
  """
  config = config.copy_and_resolve_references()
  for key, value in sweeps.config_overrides(overrides).items():
    try:
      ml_config_path.set_value(key, config, value)
    except (KeyError, AttributeError, IndexError):
      raise KeyError(f"unknown config key {key!r}") from None
  return config


def fixed_overrides(fixed: list[str]) -> dict:
  """--overrides key=value strings as a dict of Python values."""
  return {k: parse_value(v) for k, _, v in (kv.partition("=") for kv in fixed)}


def check_members(config, members: list[dict], is_gan: bool) -> list[str]:
  """Validates every member's config in this process; returns one error line per bad member."""
  if is_gan:
    from gan.keys import validate as check  # pylint: disable=g-import-not-at-top
  else:
    from cnn.keys import validate as check  # pylint: disable=g-import-not-at-top
  errors = []
  for m in members:
    try:
      check(apply_overrides(config, m))
    except Exception as e:  # pylint: disable=broad-except
      errors.append(f"{sweeps.member_name(m)}: {e}")
  return errors


def member_config(base, job: Job) -> dict:
  """The whole config job's run records in its config.json: base, the member's overrides, seed."""
  from common import config as cfg  # pylint: disable=g-import-not-at-top
  return cfg.to_dict(apply_overrides(base, {**job.member, "seed": job.seed}))


def describe_changes(changes: list[str], shown: int = 3) -> str:
  return "; ".join(changes[:shown]) + (f"; {len(changes) - shown} more" if len(changes) > shown
                                       else "")


def classify(jobs: list[Job], is_gan: bool) -> None:
  """Marks each job finished (current results), or records what changed since its run."""
  for job in jobs:
    diffs = recorded_differences(job, is_gan)
    if diffs:
      job.changed = diffs
    elif diffs == [] and finished(job.workdir):
      job.status = "finished"


def archive_changed(jobs: list[Job]) -> None:
  """Moves each changed member's old run aside (never deleting) so that it runs afresh; a member
  running elsewhere right now is left alone."""
  from common import runs  # pylint: disable=g-import-not-at-top
  for job in jobs:
    owner = live_owner(job)
    if owner:
      job.status = "running"
      print(f"  skip {job.name} (its config changed, but it is running: pid {owner.get('pid')})")
      continue
    path = runs.archive_run(job.workdir)
    print(f"  {job.name}: config changed ({describe_changes(job.changed)}); old run moved to "
          f"{path}; runs afresh", flush=True)


def sweep_record(args, config_path: str, preset: str, name: str, fixed: list[str],
                 members: list[dict]) -> dict:
  """What SWEEP_DIR/sweep.json records: the config file (relative to the repository), the
  sweep, seeds, overrides and members, as JSON gives them back."""
  rel = os.path.relpath(config_path, REPO)
  config_id = (config_path if rel.startswith("..") else rel) + (f":{preset}" if preset else "")
  return json.loads(json.dumps({"config": config_id, "sweep": name, "seeds": args.seeds,
                                "overrides": fixed, "members": members}, default=str))


def check_record(local_dir: str, record: dict) -> None:
  """Refuses a sweep directory that records another config's sweep."""
  path = os.path.join(local_dir, "sweep.json")
  if not os.path.exists(path):
    return
  old = read_json(path).get("config", "")
  old_path, _, old_preset = old.partition(":")
  new_path, _, new_preset = record["config"].partition(":")
  if (os.path.abspath(os.path.join(REPO, old_path)), old_preset) != (
      os.path.abspath(os.path.join(REPO, new_path)), new_preset):
    raise SystemExit(f"Error: {local_dir} holds a sweep of {old}, not of {record['config']}: "
                     "pass another --workdir.")


def write_record(local_dir: str, record: dict) -> None:
  """Writes sweep.json; a different earlier record is kept beside it, and the change is said."""
  path = os.path.join(local_dir, "sweep.json")
  os.makedirs(local_dir, exist_ok=True)
  if os.path.exists(path):
    old = read_json(path)
    changes = [f"{k}: {old.get(k)!r} -> {record[k]!r}" for k in record
               if k != "members" and old.get(k) != record[k]]
    if old.get("members") != record["members"]:
      changes.append("members changed")
    if not changes:
      return
    kept = f"{path}.{time.strftime('%Y%m%d-%H%M%S')}"
    os.replace(path, kept)
    print(f"Note: this sweep differs from the one recorded before ({'; '.join(changes)}); "
          f"the old record is kept as {kept}.")
  with open(path, "w") as f:
    json.dump(record, f, indent=1)


# ---------------------------------------------------------------------------------------------
# Commands


def member_flags(job: Job, fixed: list[str]) -> list[str]:
  flags = [f"--config.{kv}" for kv in fixed]
  flags += [f"--config.{k}={sweeps.format_value(v)}"
            for k, v in sweeps.config_overrides(job.member).items()]
  return flags + [f"--config.seed={job.seed}"]


def local_command(job: Job, module: str, config_arg: str, fixed: list[str]) -> list[str]:
  return [sys.executable, "-m", module, f"--config={config_arg}", f"--workdir={job.workdir}",
          *member_flags(job, fixed)]


def tpu_command(job: Job, module: str, config_arg: str, fixed: list[str], args,
                slice_name: str) -> list[str]:
  """scripts/tpu.py run --foreground: the member runs on every worker of the slice."""
  cmd = [sys.executable, os.path.join(REPO, "scripts", "tpu.py"), "run",
         f"--name={slice_name}", f"--zone={args.tpu_zone}"]
  if args.tpu_project:
    cmd.append(f"--project={args.tpu_project}")
  cmd += ["--foreground", f"--log={job.name}.log", "--",
          "python", "-m", module, f"--config={config_arg}", f"--workdir={job.workdir}",
          *member_flags(job, fixed)]
  return cmd


# ---------------------------------------------------------------------------------------------
# Running

PREPARE = """
import json, sys
import ml_collections
from common import datasets
datasets.prepare(ml_collections.ConfigDict(json.loads(sys.argv[1])))
"""


def prepare_datasets(configs) -> bool:
  """Prepares each TFDS dataset the members read, once, before members run side by side (two
  members preparing the same dataset at once collide). Returns False if preparation failed."""
  wanted = {}
  for c in configs:
    if c.dataset in ("mnist1d",):
      continue
    data_dir = epath.Path(
        c.data_dir or os.environ.get("TFDS_DATA_DIR") or "~/tensorflow_datasets").expanduser()
    try:
      if any(data_dir.glob(f"{c.dataset}/*/dataset_info.json")):
        continue
    except Exception:  # pylint: disable=broad-except
      pass  # unreadable: let common.datasets.prepare say why
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


def pid_alive(pid) -> bool:
  """Whether pid is a live (not zombie) process on this host."""
  if not isinstance(pid, int) or pid <= 0:
    return False
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:
    pass
  try:
    with open(f"/proc/{pid}/stat") as f:
      return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
  except (OSError, IndexError):
    return True


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


# ---------------------------------------------------------------------------------------------
# Summary


def flatten(tree: dict, prefix: str = "") -> dict:
  out = {}
  for k, v in tree.items():
    key = f"{prefix}{k}"
    if isinstance(v, dict):
      out.update(flatten(v, key + "."))
    elif isinstance(v, (int, float, str)) and not isinstance(v, bool):
      out[key] = v
  return out


# GAN runs are ranked by sample quality, never by a loss: the first of these their results hold.
GAN_QUALITY = ("eval.inception_fid", "eval.fid")
NOT_RANKED = ("not ranked: no run has a sample-quality metric ({}). GAN runs evaluate their "
              "samples with a classifier: train one (python -m cnn.main --config=configs/cnn.py), "
              "pass --config.classifier_workdir=runs/cnn, or rank by --metric=KEY.")


def default_metric(rows: list[dict], is_gan: bool) -> str | None:
  """test.accuracy for classifiers; for GANs a quality metric, or None when no run has one."""
  if not is_gan:
    return "test.accuracy"
  return next((m for m in GAN_QUALITY if any(m in r for r in rows)), None)


def lower_is_better(metric: str, mode: str) -> bool:
  if mode != "auto":
    return mode == "min"
  return any(s in metric.lower() for s in ("loss", "fid", "error", "time"))


def as_number(v) -> float:
  if isinstance(v, (int, float)) and not isinstance(v, bool):
    return float(v)
  return math.nan


def mean_std(values: list[float]) -> tuple[float, float]:
  """Mean and sample std (ddof 1); the std of fewer than two values is NaN, never 0."""
  vals = [v for v in values if not math.isnan(v)]
  if not vals:
    return math.nan, math.nan
  m = sum(vals) / len(vals)
  if len(vals) < 2:
    return m, math.nan
  return m, math.sqrt(sum((v - m) ** 2 for v in vals) / (len(vals) - 1))


def fmt(v) -> str:
  if isinstance(v, float):
    return "" if math.isnan(v) else f"{v:.4g}"
  return str(v)


def md_table(header: list[str], rows: list[list]) -> str:
  esc = lambda s: fmt(s).replace("|", "\\|")
  lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
  lines += ["| " + " | ".join(esc(c) for c in row) + " |" for row in rows]
  return "\n".join(lines)


def summarize(jobs: list[Job], out_dir: str, is_gan: bool, metric: str | None, mode: str,
              title: str) -> dict:
  """Writes summary.csv, summary_grouped.csv, summary.md and summary.png; returns what it wrote."""
  override_keys = list(dict.fromkeys(
      k for j in jobs for k in sweeps.config_overrides(j.member)))
  rows, missing = [], []
  for job in jobs:
    path = epath.Path(job.workdir) / "results.json"
    if not has_current_results(job, is_gan):
      missing.append(job)
      continue
    results = flatten({k: v for k, v in read_json(path).items() if k != "preempted"})
    row = {"member": job.group}
    row.update({k: sweeps.config_overrides(job.member).get(k, "") for k in override_keys})
    row["seed"] = job.seed
    row.update(results)
    rows.append(row)
  os.makedirs(out_dir, exist_ok=True)
  metric = metric or default_metric(rows, is_gan)
  low = lower_is_better(metric or "", mode)
  result_keys = sorted({k for r in rows for k in r} - {"member", "seed", *override_keys})
  result_keys = ([metric] if metric in result_keys else []) + [
      k for k in result_keys if k not in (metric, "wall_time_s")] + (
          ["wall_time_s"] if "wall_time_s" in result_keys else [])
  columns = ["member", *override_keys, "seed", *result_keys]
  with open(os.path.join(out_dir, "summary.csv"), "w", newline="") as f:
    writer = csv.DictWriter(f, columns, restval="")
    writer.writeheader()
    writer.writerows(rows)

  # Grouped over seeds.
  by_group = collections.OrderedDict()
  for row in rows:
    by_group.setdefault(row["member"], []).append(row)
  numeric = [k for k in result_keys if any(not math.isnan(as_number(r.get(k))) for r in rows)]
  groups = []
  for name, members in by_group.items():
    g = {"member": name, **{k: members[0].get(k, "") for k in override_keys}, "n": len(members)}
    for k in numeric:
      g[k + ".mean"], g[k + ".std"] = mean_std([as_number(r.get(k)) for r in members])
    groups.append(g)
  sort_key = lambda g: (math.isnan(g.get(f"{metric}.mean", math.nan)),
                        (1 if low else -1) * g.get(f"{metric}.mean", 0.0)
                        if not math.isnan(g.get(f"{metric}.mean", math.nan)) else 0.0)
  groups.sort(key=sort_key)
  gcols = ["member", *override_keys, "n"] + [f"{k}.{s}" for k in numeric for s in ("mean", "std")]
  with open(os.path.join(out_dir, "summary_grouped.csv"), "w", newline="") as f:
    writer = csv.DictWriter(f, gcols, restval="")
    writer.writeheader()
    writer.writerows(groups)

  # Markdown: the overrides that differ between members, and the metrics that matter.
  varying = [k for k in override_keys
             if len({json.dumps(r.get(k), default=str) for r in rows}) > 1]
  shown = [k for k in numeric if not any(k == m or k.startswith(m + ".") for m in MD_SKIP)]
  text = [f"# Sweep {title}", "",
          f"{len(rows)} finished runs of {len(jobs)}; " + (
              f"sorted by `{metric}` ({'lower' if low else 'higher'} is better)." if metric
              else NOT_RANKED.format(", ".join(GAN_QUALITY))), "",
          "## Mean ± std over seeds", "",
          md_table(["member", *varying, "n"] + shown,
                   [[g["member"], *[g[k] for k in varying], g["n"]] +
                    [f"{fmt(g[k + '.mean'])} ± {fmt(g[k + '.std'])}" if g["n"] > 1
                     else fmt(g[k + ".mean"]) for k in shown] for g in groups]),
          "", "## Runs", "",
          md_table(["member", *varying, "seed"] + shown,
                   [[r["member"], *[r.get(k, "") for k in varying], r["seed"]] +
                    [r.get(k, "") for k in shown] for r in rows])]
  if missing:
    text += ["", "## Not finished", ""] + [f"- {j.name} ({missing_reason(j)})" for j in missing]
  with open(os.path.join(out_dir, "summary.md"), "w") as f:
    f.write("\n".join(text) + "\n")
  png = plot(rows, groups, varying, metric, os.path.join(out_dir, "summary.png"))
  return {"rows": rows, "groups": groups, "metric": metric, "missing": missing, "png": png}


def missing_reason(job: Job) -> str:
  if job.status not in ("pending", "finished"):
    return job.status
  if finished(job.workdir):
    return "its results.json is another config's"
  return "no results.json"


def plot(rows: list[dict], groups: list[dict], varying: list[str], metric: str | None,
         path: str) -> str | None:
  """The metric per member, and against each swept value (runs as dots, means as a line)."""
  values = [as_number(r.get(metric)) for r in rows]
  if not rows or not metric or all(math.isnan(v) for v in values):
    return None
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  # One panel per distinct swept column (keys that always vary together share a panel).
  panels, seen = [], set()
  for k in varying:
    column = tuple(json.dumps(r.get(k), default=str) for r in rows)
    if column not in seen:
      seen.add(column)
      panels.append(k)
  if len(panels) > 4:  # e.g. labelled members that each change many keys: the member panel says it
    panels = []
  n = 1 + len(panels)
  fig, axes = plt.subplots(1, n, figsize=(4.2 * n, 3.6), squeeze=False)
  ax = axes[0][0]
  names = [g["member"] for g in groups]
  means = [g.get(metric + ".mean", math.nan) for g in groups]
  stds = [g.get(metric + ".std", 0.0) for g in groups]
  ax.errorbar(range(len(names)), means, yerr=stds, fmt="o", capsize=3)
  ax.set_xticks(range(len(names)))
  ax.set_xticklabels(names, rotation=60, ha="right", fontsize=6)
  ax.set_ylabel(metric)
  ax.set_title("members (mean ± std)", fontsize=9)
  for ax, key in zip(axes[0][1:], panels):
    xs = [r.get(key) for r in rows]
    numeric = all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in xs)
    if numeric:
      pos = [float(x) for x in xs]
      ticks = sorted(set(pos))
      if ticks[0] > 0 and ticks[-1] / ticks[0] >= 50:
        ax.set_xscale("log")
      if len(ticks) <= 8:
        ax.set_xticks(ticks)
        ax.set_xticklabels([f"{t:g}" for t in ticks], fontsize=7)
    else:
      labels = list(dict.fromkeys(str(x) for x in xs))
      pos = [labels.index(str(x)) for x in xs]
      ticks = list(range(len(labels)))
      ax.set_xticks(ticks)
      ax.set_xticklabels(labels, rotation=30, ha="right", fontsize=7)
    ax.scatter(pos, values, alpha=0.5, s=14)
    line = [mean_std([v for p, v in zip(pos, values) if p == t])[0] for t in ticks]
    ax.plot(ticks, line, "-" if numeric else "_", color="C1", markersize=20)
    ax.set_xlabel(key)
    ax.set_title(f"{metric} vs {key}", fontsize=9)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)
  return path


# ---------------------------------------------------------------------------------------------


# ---------------------------------------------------------------------------------------------
# SLURM: one job array (a task per member x seed), then a dependent job that writes the summary.

# Defaults; --slurm-arg=--KEY=VALUE replaces the one with the same KEY or adds it.
SLURM_DEFAULTS = (
    "--nodes=1",
    "--ntasks-per-node=1",      # processes per node: one per GPU for multi-GPU members
    "--requeue",                # a requeued task (preemption, or itself) runs again
    "--signal=TERM@120",        # SIGTERM to the run 2 min before the time limit: it saves and
                                # exits 0, and the task requeues itself to resume
    "--open-mode=append",       # requeued tasks append to their output file
)
# Options that also apply to the summary job (where it runs, who pays).
SLURM_SUMMARY_KEYS = ("--partition", "--account", "--qos", "--reservation", "--clusters")
MAX_REQUEUES = 20

ARRAY_BODY = r"""
# Generated by scripts/sweep.py. Array task i runs row i+1 of $TABLE (name, workdir, log,
# command) through srun. A finished member (results.json present) is skipped. A run that gets
# SIGTERM (preemption, or --signal before the time limit) saves a checkpoint and exits 0 without
# results.json: the task then requeues itself, and the rerun resumes from the checkpoint.
set -u
cd {repo}
{setup}export PYTHONUNBUFFERED=1
[ -n "${{SLURM_CPUS_PER_TASK:-}}" ] && export SRUN_CPUS_PER_TASK=$SLURM_CPUS_PER_TASK
PYTHON={python}
TABLE={table}
IFS=$'\t' read -r name workdir log cmd < <(sed -n "$((SLURM_ARRAY_TASK_ID + 1))p" "$TABLE")
task="${{SLURM_ARRAY_JOB_ID}}_${{SLURM_ARRAY_TASK_ID}}"   # requeue this task, not the whole array
finished() {{  # local or gs:// workdir
  "$PYTHON" -c 'import sys; from etils import epath; sys.exit(not epath.Path(sys.argv[1]).exists())' \
    "$workdir/results.json"
}}
if finished; then echo "$name: finished (results.json present), skipped"; exit 0; fi
mkdir -p "$(dirname "$log")"
printf '\n=== %s task %s on %s, restart %s: %s\n' "$(date '+%Y-%m-%d %H:%M:%S')" "$task" \
  "$(hostname)" "${{SLURM_RESTART_COUNT:-0}}" "$cmd" >> "$log"
echo "$name: running on $SLURM_JOB_NODELIST (restart ${{SLURM_RESTART_COUNT:-0}}); log: $log"
srun --kill-on-bad-exit=1 bash -c "exec $cmd" >> "$log" 2>&1 &
pid=$!
signalled=
trap 'signalled=1; kill -TERM "$pid" 2>/dev/null' TERM   # --signal=B:TERM or scancel --full
rc=0; wait "$pid" || rc=$?
if [ -n "$signalled" ]; then rc=0; wait "$pid" || rc=$?; fi
trap - TERM
if finished; then echo "$name: done"; exit 0; fi
if [ "$rc" -ne 0 ]; then echo "$name: FAILED (exit code $rc); log: $log"; exit "$rc"; fi
if [ "${{SLURM_RESTART_COUNT:-0}}" -ge {max_requeues} ]; then
  echo "$name: stopped without results {max_requeues} times; not requeued again"; exit 1
fi
echo "$name: stopped with a checkpoint; requeueing $task to resume"
scontrol requeue "$task"
exit 0
"""

SUMMARY_BODY = """
# Generated by scripts/sweep.py: runs after every array task has ended (--dependency=afterany).
set -u
cd {repo}
{setup}{command}
"""


def slurm_options(extra: list[str]) -> list[str]:
  """SLURM_DEFAULTS with --slurm-arg values replacing same-named ones (--KEY=VALUE or --FLAG)."""
  options = {}
  for opt in (*SLURM_DEFAULTS, *extra):
    if not opt.startswith("--"):
      raise SystemExit(f"Error: --slurm-arg {opt!r}: use the long form --KEY=VALUE, e.g. "
                       "--slurm-arg=--time=04:00:00.")
    options[opt.partition("=")[0]] = opt
  return list(options.values())


def sbatch_header(options: list[str]) -> str:
  return "#!/bin/bash\n" + "".join(f"#SBATCH {o}\n" for o in options)


def summary_command(args, config_arg: str, sweep_dir: str, fixed: list[str]) -> list[str]:
  """This sweep's `scripts/sweep.py ... --summarize`, with absolute paths."""
  cmd = [sys.executable, os.path.join(REPO, "scripts", "sweep.py"), f"--config={config_arg}"]
  if args.sweep:
    spec = args.sweep
    if spec.endswith(".json"):
      spec = os.path.abspath(spec)
    elif ".py:" in spec:
      path, name = spec.rsplit(":", 1)
      spec = f"{os.path.abspath(path)}:{name}"
    cmd.append(f"--sweep={spec}")
  for item in args.grid:
    cmd += ["--grid", item]
  cmd += [f"--seeds={args.seeds}", f"--workdir={sweep_dir}", f"--mode={args.mode}"]
  if args.metric:
    cmd.append(f"--metric={args.metric}")
  if fixed:
    cmd += ["--overrides", *fixed]
  return cmd + ["--summarize"]


def slurm_files(jobs: list[Job], args, sweep_name: str, slurm_dir: str,
                summarize_cmd: list[str]) -> dict[str, str]:
  """{path: text} for members.tsv, array.sbatch and summary.sbatch."""
  table = os.path.join(slurm_dir, "members.tsv")
  rows = [f"{j.name}\t{j.workdir}\t{j.log}\t{shlex.join(j.cmd)}\n" for j in jobs]
  assert all(r.count("\t") == 3 for r in rows), "a tab inside a member's name or command"
  setup = "".join(line + "\n" for line in args.slurm_setup)
  user = slurm_options(args.slurm_arg)
  throttle = f"%{args.parallel}" if args.parallel else ""
  array_opts = [f"--job-name=sweep-{sweep_name}", f"--array=0-{len(jobs) - 1}{throttle}",
                f"--output={slurm_dir}/%A_%a.out", *user]
  array = sbatch_header(array_opts) + ARRAY_BODY.format(
      repo=shlex.quote(REPO), setup=setup, python=shlex.quote(sys.executable),
      table=shlex.quote(table), max_requeues=MAX_REQUEUES)
  summary_opts = [f"--job-name=sweep-{sweep_name}-summary", f"--output={slurm_dir}/summary_%j.out",
                  "--nodes=1", "--ntasks=1"] + [
                      o for o in user if o.partition("=")[0] in SLURM_SUMMARY_KEYS]
  summary = sbatch_header(summary_opts) + SUMMARY_BODY.format(
      repo=shlex.quote(REPO), setup=setup, command=shlex.join(summarize_cmd))
  return {table: "".join(rows), os.path.join(slurm_dir, "array.sbatch"): array,
          os.path.join(slurm_dir, "summary.sbatch"): summary}


def submit_slurm(files: dict[str, str], slurm_dir: str, dry_run: bool) -> int:
  array, summary = (os.path.join(slurm_dir, f) for f in ("array.sbatch", "summary.sbatch"))
  array_cmd = ["sbatch", "--parsable", array]
  summary_cmd = lambda job_id: ["sbatch", "--parsable", f"--dependency=afterany:{job_id}",
                                summary]
  if dry_run:
    for path, text in files.items():
      print(f"\n# ----- {path}\n{text}", end="" if text.endswith("\n") else "\n")
    print("\n# ----- submit")
    print(shlex.join(array_cmd))
    print(shlex.join(summary_cmd("<ARRAY_JOB_ID>")))
    return 0
  os.makedirs(slurm_dir, exist_ok=True)
  for path, text in files.items():
    with open(path, "w") as f:
      f.write(text)
  try:
    ids = []
    for cmd in (array_cmd, None):
      cmd = cmd or summary_cmd(ids[0])
      r = subprocess.run(cmd, capture_output=True, text=True, check=False)
      if r.returncode:
        print(f"Error: {shlex.join(cmd)} failed (exit code {r.returncode}):\n{r.stderr.strip()}",
              file=sys.stderr)
        return 1
      ids.append(r.stdout.strip().split(";")[0])
      print(f"+ {shlex.join(cmd)} -> job {ids[-1]}", flush=True)
  except FileNotFoundError:
    print("Error: sbatch not found; run this on a SLURM login node.", file=sys.stderr)
    return 127
  print(f"Submitted array job {ids[0]} and summary job {ids[1]}. Watch: squeue -j {ids[0]},{ids[1]};"
        f" logs in {slurm_dir}/ and each member's log.txt.", flush=True)
  return 0


# ---------------------------------------------------------------------------------------------


def parse(argv: list[str]) -> argparse.Namespace:
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                              formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
  p.add_argument("--config", required=True, help="configs/X.py[:preset]")
  p.add_argument("--sweep", help="NAME (the config's get_sweep), FILE.py:NAME or FILE.json")
  p.add_argument("--grid", action="append", default=[], metavar="KEY=V1,V2",
                 help="a product axis; repeat for more")
  p.add_argument("--workdir", help="the sweep's directory; default runs/sweeps/<sweep name>")
  p.add_argument("--parallel", type=int, default=None,
                 help="members running at once (local; default 1), or the array's %%K limit "
                 "(slurm; default none)")
  p.add_argument("--seeds", type=int, default=1, help="seeds per member: seed, seed+1, ...")
  p.add_argument("--dry-run", action="store_true", help="print the commands, run nothing")
  p.add_argument("--launcher", choices=("local", "tpu", "slurm"), default="local")
  p.add_argument("--tpu-name", help="--launcher=tpu: the TPU VM (see scripts/tpu.py), or several "
                 "slices a,b,c: one member per slice at a time")
  p.add_argument("--tpu-zone", help="--launcher=tpu: its zone")
  p.add_argument("--tpu-project", help="--launcher=tpu: its project (default: gcloud's)")
  p.add_argument("--slurm-arg", action="append", default=[], metavar="--KEY=VALUE",
                 help="--launcher=slurm: an #SBATCH option for every member, e.g. "
                 "--slurm-arg=--time=04:00:00 --slurm-arg=--gpus-per-node=8 (repeat); replaces "
                 f"the default of the same name ({' '.join(SLURM_DEFAULTS)})")
  p.add_argument("--slurm-setup", action="append", default=[], metavar="LINE",
                 help="--launcher=slurm: a shell line the batch scripts run first, e.g. "
                 "'module load cuda' (repeat)")
  p.add_argument("--metric", help="sort and plot by this results key (dotted); default "
                 "eval.classifier_score or final_epoch.g_loss for GANs, test.accuracy for CNNs")
  p.add_argument("--mode", choices=("auto", "min", "max"), default="auto",
                 help="whether lower or higher --metric is better (auto: lower for losses)")
  p.add_argument("--overrides", nargs="*", action="extend", default=[], metavar="KEY=VALUE",
                 help="config overrides for every member, e.g. num_epochs=2 (or, as the "
                 "mains take them, --config.num_epochs=2)")
  p.add_argument("--summarize", action="store_true", help="only (re)write the summary")
  p.add_argument("--tail", type=int, default=20, help="log lines shown for a failed member")
  config_flags = [a for a in argv if a.startswith("--config.")]
  args = p.parse_args([a for a in argv if not a.startswith("--config.")])
  for flag in config_flags:
    if "=" not in flag:
      p.error(f"{flag}: use --config.key=value")
  args.overrides += config_flags
  return args


def main(argv: list[str]) -> int:
  args = parse(argv)
  config_path, preset = split_config_arg(args.config)
  config_path = os.path.abspath(config_path)
  config_module = load_module(config_path, "sweep_config")
  config = config_module.get_config(preset)
  is_gan = "loss" in config
  module = "gan.main" if is_gan else "cnn.main"
  sweep_name, members = resolve_members(args, config_module)
  try:
    sweeps.check_names(members)
  except ValueError as e:
    raise SystemExit(f"Error: {e}") from None

  fixed = []
  swept = {k for m in members for k in sweeps.config_overrides(m)}
  for kv in args.overrides:
    key = kv.removeprefix("--config.").partition("=")[0]
    if "=" not in kv or not key:
      raise SystemExit(f"Error: --overrides {kv!r}: use key=value.")
    if key in swept or key == "seed":
      raise SystemExit(f"Error: --overrides {key} is swept (or the seed); drop it.")
    fixed.append(kv.removeprefix("--config."))

  sweep_dir = args.workdir or os.path.join("runs", "sweeps", sweep_name)
  if is_url(sweep_dir):  # gs://: runs write there; logs and summaries stay on this machine
    local_dir = os.path.join(REPO, "runs", "sweeps", sweep_name)
  else:
    sweep_dir = local_dir = os.path.abspath(sweep_dir)

  base_seed = config.seed
  jobs = []
  for member in members:
    group = sweeps.member_name(member)
    for s in range(args.seeds):
      seed = base_seed + s
      name = sweeps.member_name({**member, "seed": seed})
      jobs.append(Job(member, seed, group, name, f"{sweep_dir}/{name}",
                      os.path.join(local_dir, name, "log.txt")))

  slices, command = None, None
  if args.launcher == "tpu":
    if not (args.tpu_name and args.tpu_zone):
      raise SystemExit("Error: --launcher=tpu needs --tpu-name and --tpu-zone.")
    slices = list(dict.fromkeys(n.strip() for n in args.tpu_name.split(",") if n.strip()))
    if not slices:
      raise SystemExit("Error: --tpu-name: give one or more slice names, a,b,c.")
    if not is_url(sweep_dir):
      print("Warning: a multi-host TPU slice needs a shared workdir: pass --workdir=gs://...",
            file=sys.stderr)
    config_arg = os.path.relpath(config_path, REPO) + (f":{preset}" if preset else "")
    command = lambda job, slot: tpu_command(job, module, config_arg, fixed, args, slot)
    for i, job in enumerate(jobs):  # what a dry run shows: the slices in turn
      job.cmd = command(job, slices[i % len(slices)])
    if args.parallel and args.parallel != len(slices):
      print(f"Note: --launcher=tpu runs one member per slice at a time ({len(slices)} at once).",
            file=sys.stderr)
  else:
    config_arg = config_path + (f":{preset}" if preset else "")
    for job in jobs:
      job.cmd = local_command(job, module, config_arg, fixed)

  try:
    base = apply_overrides(config, fixed_overrides(fixed))
  except (KeyError, ValueError, TypeError) as e:
    print(f"Error: --overrides: {e}", file=sys.stderr)
    return 2
  errors = check_members(base, members, is_gan)
  if errors:
    print("Error: invalid members (nothing was started):\n  " + "\n  ".join(errors),
          file=sys.stderr)
    return 2
  for job in jobs:
    job.config = member_config(base, job)
  record = sweep_record(args, config_path, preset, sweep_name, fixed, members)
  check_record(local_dir, record)

  # A dry run of a gs:// sweep prints the commands without asking the bucket what is done.
  if not (args.dry_run and is_url(sweep_dir)):
    classify(jobs, is_gan)
  done_before = [j for j in jobs if j.status == "finished"]
  todo = [j for j in jobs if j.status == "pending"]
  changed = [j for j in todo if j.changed]
  print(f"Sweep {sweep_name}: {len(members)} members x {args.seeds} seeds = {len(jobs)} runs of "
        f"{module} in {sweep_dir} ({len(done_before)} finished, {len(todo)} to run"
        + (f", {len(changed)} of them afresh: their recorded config differs" if changed else "")
        + ")", flush=True)
  slurm_dir = os.path.join(local_dir, "slurm")
  slurm = None
  if args.launcher == "slurm" and todo and not args.summarize:
    slurm = slurm_files(todo, args, sweep_name, slurm_dir,
                        summary_command(args, config_arg, sweep_dir, fixed))
  if args.dry_run:
    for j in jobs:
      if j.status == "finished":
        print(f"# {j.name}: finished")
        continue
      if j.changed:
        print(f"# {j.name}: config changed ({describe_changes(j.changed)}); its run would be "
              "archived and run afresh")
      if not slurm:
        print(shlex.join(j.cmd))
    if slurm:
      return submit_slurm(slurm, slurm_dir, dry_run=True)
    return 0

  if not args.summarize:
    for j in done_before:
      print(f"  skip {j.name} (finished)")
    write_record(local_dir, record)
    archive_changed(changed)
    todo = [j for j in todo if j.status == "pending"]
    at_once = {"local": args.parallel or 1, "tpu": 1, "slurm": len(todo)}[args.launcher]
    if todo and min(at_once, len(todo)) > 1:
      try:
        base = apply_overrides(config, fixed_overrides(fixed))
        member_configs = [apply_overrides(base, j.member) for j in todo]
      except (KeyError, ValueError, TypeError):
        member_configs = [config]  # a bad override: its members fail and say so
      if not prepare_datasets(member_configs):
        return 1
    if slurm:
      return submit_slurm(slurm, slurm_dir, dry_run=False)
    Runner(todo, args.parallel or 1, args.tail, slots=slices, command=command).run()

  failed = [j for j in jobs if j.status == "failed"]
  summary = summarize(jobs, local_dir, is_gan, args.metric, args.mode,
                      f"{sweep_name} ({args.config})")
  print(f"Summary of {len(summary['rows'])} runs, sorted by {summary['metric']}: "
        f"{os.path.join(local_dir, 'summary.md')}" + (f", {summary['png']}" if summary["png"] else ""))
  if summary["metric"] is None:
    print("  " + NOT_RANKED.format(", ".join(GAN_QUALITY)))
  for g in summary["groups"][:10] if summary["metric"] else ():
    m, s = g.get(summary["metric"] + ".mean", math.nan), g.get(summary["metric"] + ".std", math.nan)
    spread = f" ± {fmt(s)}" if g["n"] > 1 else ""
    print(f"  {fmt(m) + spread:>20}  ({g['n']} seed{'s' if g['n'] > 1 else ''})  {g['member']}")
  interrupted = [j for j in jobs if j.status == "interrupted"]
  if interrupted:
    print(f"{len(interrupted)} runs stopped before finishing; rerun the same command to resume.")
  elsewhere = [j for j in jobs if j.status == "running"]
  if elsewhere:
    print(f"{len(elsewhere)} runs were already running in another process and were not started "
          "again: " + ", ".join(j.name for j in elsewhere))
  if failed:
    print(f"\n{len(failed)} of {len(jobs)} runs FAILED:")
    for j in failed:
      print(f"\n--- {j.name} (exit code {j.returncode}); last lines of {j.log}:")
      print(log_tail(j.log, args.tail))
    return 1
  return 130 if interrupted else 0


if __name__ == "__main__":
  sys.exit(main(sys.argv[1:]))
