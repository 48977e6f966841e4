"""Runs a sweep: every override set x seed as its own run, then one summary table and plot.

    python scripts/sweep.py --config=configs/acgan.py:cpu --sweep=ablation --parallel=2 --seeds=2
    python scripts/sweep.py --config=configs/cnn_seed.py:cpu --grid optimizer.learning_rate=0.3,1.0,3.0
    python scripts/sweep.py --config=configs/gan.py:cpu --sweep=losses --dry-run
    python scripts/sweep.py --config=configs/wgan_gp.py --sweep=ablation --launcher=tpu \\
        --tpu-name=gan --tpu-zone=us-west4-a --workdir=gs://BUCKET/sweeps/wgan_gp

--sweep is a name the config file's get_sweep(name) knows, FILE.py:NAME (get_sweep in another file)
or FILE.json (a list of override dicts); --grid key=v1,v2 adds a product axis (alone or on top of
--sweep). --overrides key=value ... applies to every member. Each member runs
`python -m cnn.main|gan.main --config=... --workdir=SWEEP_DIR/MEMBER --config.key=value ...
--config.seed=S` with its output in SWEEP_DIR/MEMBER/log.txt. Rerunning the same command skips
finished members (results.json present) and resumes unfinished ones from their checkpoints. A
failing member doesn't stop the others; the script ends with each failure's log tail and exits 1.
Then SWEEP_DIR/summary.csv (one row per run), summary_grouped.csv (mean and std over seeds),
summary.md (both, sorted by --metric) and summary.png (the metric against each swept value).
"""

import argparse
import ast
import collections
import concurrent.futures
import csv
import dataclasses
import glob
import importlib.util
import json
import math
import os
import shlex
import signal
import subprocess
import sys
import threading
import time

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
  status: str = "pending"  # pending | finished | done | failed | interrupted
  returncode: int | None = None
  seconds: float = 0.0


# ---------------------------------------------------------------------------------------------
# Paths that may be gs://


def is_remote(path: str) -> bool:
  return "://" in path


def path_exists(path: str) -> bool:
  if is_remote(path):
    from etils import epath  # pylint: disable=g-import-not-at-top
    try:
      return epath.Path(path).exists()
    except Exception as e:  # pylint: disable=broad-except
      print(f"Warning: can't read {path} ({type(e).__name__}); counted as not finished.",
            file=sys.stderr)
      return False
  return os.path.exists(path)


def read_json(path: str):
  if is_remote(path):
    from etils import epath  # pylint: disable=g-import-not-at-top
    return json.loads(epath.Path(path).read_text())
  with open(path) as f:
    return json.load(f)


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
  """A copy of config with dotted-key overrides applied (as --config.key=value would)."""
  config = config.copy_and_resolve_references()
  for key, value in sweeps.config_overrides(overrides).items():
    target = config
    *parents, leaf = key.split(".")
    for p in parents:
      target = target[p]
    if leaf not in target:
      raise KeyError(f"unknown config key {key!r}")
    if isinstance(target[leaf], float) and isinstance(value, int) and not isinstance(value, bool):
      value = float(value)
    target[leaf] = value
  return config


def fixed_overrides(fixed: list[str]) -> dict:
  """--overrides key=value strings as a dict of Python values."""
  return {k: parse_value(v) for k, _, v in (kv.partition("=") for kv in fixed)}


def check_members(config, members: list[dict], is_gan: bool) -> list[str]:
  """Validates every member's config in this process; returns one error line per bad member."""
  if is_gan:
    from gan import train as task  # pylint: disable=g-import-not-at-top
    check = task.check
  else:
    from cnn import train as task  # pylint: disable=g-import-not-at-top
    from common import config as cfg  # pylint: disable=g-import-not-at-top
    check = lambda c: cfg.validate(c, task.RULES)
  errors = []
  for m in members:
    try:
      check(apply_overrides(config, m))
    except Exception as e:  # pylint: disable=broad-except
      errors.append(f"{sweeps.member_name(m)}: {e}")
  return errors


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


def tpu_command(job: Job, module: str, config_arg: str, fixed: list[str], args) -> list[str]:
  """scripts/tpu.py run --foreground: the member runs on every worker of the slice, in turn."""
  cmd = [sys.executable, os.path.join(REPO, "scripts", "tpu.py"), "run",
         f"--name={args.tpu_name}", f"--zone={args.tpu_zone}"]
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
from common import data
data._tfds_builder(ml_collections.ConfigDict(json.loads(sys.argv[1])))
"""


def prepare_datasets(configs) -> bool:
  """Prepares each TFDS dataset the members read, once, before members run side by side (two
  members preparing the same dataset at once collide). Returns False if preparation failed."""
  wanted = {}
  for c in configs:
    if c.dataset in ("mnist1d",):
      continue
    data_dir = os.path.expanduser(
        c.data_dir or os.environ.get("TFDS_DATA_DIR") or "~/tensorflow_datasets")
    if glob.glob(os.path.join(data_dir, c.dataset, "*", "dataset_info.json")):
      continue
    wanted[(c.dataset, c.data_dir, c.manual_dir)] = c
  for (dataset, _, _), c in wanted.items():
    print(f"Preparing dataset {dataset} before starting members in parallel...", flush=True)
    spec = json.dumps({"dataset": c.dataset, "data_dir": c.data_dir, "manual_dir": c.manual_dir})
    r = subprocess.run([sys.executable, "-c", PREPARE, spec], cwd=REPO, capture_output=True,
                       text=True)
    if r.returncode:
      print(f"Error preparing {dataset}:\n" + "\n".join((r.stdout + r.stderr).splitlines()[-10:]),
            file=sys.stderr)
      return False
  return True


class Runner:
  """Runs jobs as subprocesses, at most `parallel` at a time; Ctrl-C stops them with SIGTERM
  (each run then saves a checkpoint, and rerunning the sweep resumes it)."""

  def __init__(self, jobs: list[Job], parallel: int, tail: int):
    self.jobs, self.parallel, self.tail = jobs, max(1, parallel), tail
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
    os.makedirs(os.path.dirname(job.log), exist_ok=True)
    start = time.perf_counter()
    with open(job.log, "a") as log:
      log.write(f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} {shlex.join(job.cmd)}\n")
      log.flush()
      with self.lock:
        proc = subprocess.Popen(job.cmd, stdout=log, stderr=subprocess.STDOUT, cwd=REPO,
                                stdin=subprocess.DEVNULL, start_new_session=True,
                                env=dict(os.environ, PYTHONUNBUFFERED="1"))  # a live log
        self.running[job.name] = proc
      print(f"  start {job.name}", flush=True)
      job.returncode = proc.wait()
    with self.lock:
      self.running.pop(job.name, None)
      self.done_count += 1
      n = self.done_count
    job.seconds = time.perf_counter() - start
    if job.returncode == 0 and path_exists(os.path.join(job.workdir, "results.json")):
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


def default_metric(rows: list[dict], is_gan: bool) -> str:
  if not is_gan:
    return "test.accuracy"
  if any("eval.classifier_score" in r for r in rows):
    return "eval.classifier_score"
  return "final_epoch.g_loss"


def lower_is_better(metric: str, mode: str) -> bool:
  if mode != "auto":
    return mode == "min"
  return any(s in metric.lower() for s in ("loss", "fid", "error", "time"))


def as_number(v) -> float:
  if isinstance(v, (int, float)) and not isinstance(v, bool):
    return float(v)
  return math.nan


def mean_std(values: list[float]) -> tuple[float, float]:
  vals = [v for v in values if not math.isnan(v)]
  if not vals:
    return math.nan, math.nan
  m = sum(vals) / len(vals)
  var = sum((v - m) ** 2 for v in vals) / (len(vals) - 1) if len(vals) > 1 else 0.0
  return m, math.sqrt(var)


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
    path = os.path.join(job.workdir, "results.json")
    if not path_exists(path):
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
  low = lower_is_better(metric, mode)
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
  sort_key = lambda g: (math.isnan(g.get(metric + ".mean", math.nan)),
                        (1 if low else -1) * g.get(metric + ".mean", 0.0)
                        if not math.isnan(g.get(metric + ".mean", math.nan)) else 0.0)
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
          f"{len(rows)} finished runs of {len(jobs)}; sorted by `{metric}` "
          f"({'lower' if low else 'higher'} is better).", "",
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
    text += ["", "## Not finished", ""] + [
        f"- {j.name} ({j.status if j.status != 'pending' else 'no results.json'})"
        for j in missing]
  with open(os.path.join(out_dir, "summary.md"), "w") as f:
    f.write("\n".join(text) + "\n")
  png = plot(rows, groups, varying, metric, os.path.join(out_dir, "summary.png"))
  return {"rows": rows, "groups": groups, "metric": metric, "missing": missing, "png": png}


def plot(rows: list[dict], groups: list[dict], varying: list[str], metric: str,
         path: str) -> str | None:
  """The metric per member, and against each swept value (runs as dots, means as a line)."""
  values = [as_number(r.get(metric)) for r in rows]
  if not rows or all(math.isnan(v) for v in values):
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


def parse(argv: list[str]) -> argparse.Namespace:
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                              formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
  p.add_argument("--config", required=True, help="configs/X.py[:preset]")
  p.add_argument("--sweep", help="NAME (the config's get_sweep), FILE.py:NAME or FILE.json")
  p.add_argument("--grid", action="append", default=[], metavar="KEY=V1,V2",
                 help="a product axis; repeat for more")
  p.add_argument("--workdir", help="the sweep's directory; default runs/sweeps/<sweep name>")
  p.add_argument("--parallel", type=int, default=1, help="members running at once (local)")
  p.add_argument("--seeds", type=int, default=1, help="seeds per member: seed, seed+1, ...")
  p.add_argument("--dry-run", action="store_true", help="print the commands, run nothing")
  p.add_argument("--launcher", choices=("local", "tpu"), default="local")
  p.add_argument("--tpu-name", help="--launcher=tpu: the TPU VM (see scripts/tpu.py)")
  p.add_argument("--tpu-zone", help="--launcher=tpu: its zone")
  p.add_argument("--tpu-project", help="--launcher=tpu: its project (default: gcloud's)")
  p.add_argument("--metric", help="sort and plot by this results key (dotted); default "
                 "eval.classifier_score or final_epoch.g_loss for GANs, test.accuracy for CNNs")
  p.add_argument("--mode", choices=("auto", "min", "max"), default="auto",
                 help="whether lower or higher --metric is better (auto: lower for losses)")
  p.add_argument("--overrides", nargs="*", action="extend", default=[], metavar="KEY=VALUE",
                 help="config overrides for every member, e.g. num_epochs=2")
  p.add_argument("--check", action="store_true",
                 help="validate every member's config here before launching any")
  p.add_argument("--summarize", action="store_true", help="only (re)write the summary")
  p.add_argument("--tail", type=int, default=20, help="log lines shown for a failed member")
  return p.parse_args(argv)


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
  if not is_remote(sweep_dir):
    sweep_dir = os.path.abspath(sweep_dir)
    local_dir = sweep_dir
  else:
    local_dir = os.path.join(REPO, "runs", "sweeps", sweep_name)  # logs and summaries

  base_seed = config.seed
  jobs = []
  for member in members:
    group = sweeps.member_name(member)
    for s in range(args.seeds):
      seed = base_seed + s
      name = sweeps.member_name({**member, "seed": seed})
      jobs.append(Job(member, seed, group, name, f"{sweep_dir}/{name}",
                      os.path.join(local_dir, name, "log.txt")))

  if args.launcher == "tpu":
    if not (args.tpu_name and args.tpu_zone):
      raise SystemExit("Error: --launcher=tpu needs --tpu-name and --tpu-zone.")
    if not is_remote(sweep_dir):
      print("Warning: a multi-host TPU slice needs a shared workdir: pass --workdir=gs://...",
            file=sys.stderr)
    config_arg = os.path.relpath(config_path, REPO) + (f":{preset}" if preset else "")
    for job in jobs:
      job.cmd = tpu_command(job, module, config_arg, fixed, args)
    if args.parallel > 1:
      print("Note: --launcher=tpu runs one member at a time on the slice.", file=sys.stderr)
      args.parallel = 1
  else:
    config_arg = config_path + (f":{preset}" if preset else "")
    for job in jobs:
      job.cmd = local_command(job, module, config_arg, fixed)

  if args.check:
    try:
      base = apply_overrides(config, fixed_overrides(fixed))
    except (KeyError, ValueError, TypeError) as e:
      print(f"Error: --overrides: {e}", file=sys.stderr)
      return 2
    errors = check_members(base, members, is_gan)
    if errors:
      print("Error: invalid members:\n  " + "\n  ".join(errors), file=sys.stderr)
      return 2

  # A dry run of a gs:// sweep prints the commands without asking the bucket what is done.
  look = not (args.dry_run and is_remote(sweep_dir))
  finished = [j for j in jobs if look and path_exists(os.path.join(j.workdir, "results.json"))]
  for j in finished:
    j.status = "finished"
  todo = [j for j in jobs if j.status == "pending"]
  print(f"Sweep {sweep_name}: {len(members)} members x {args.seeds} seeds = {len(jobs)} runs of "
        f"{module} in {sweep_dir} ({len(finished)} finished, {len(todo)} to run)", flush=True)
  if args.dry_run:
    for j in jobs:
      print(f"# {j.name}: finished" if j.status == "finished" else shlex.join(j.cmd))
    return 0

  if not args.summarize:
    for j in finished:
      print(f"  skip {j.name} (finished)")
    os.makedirs(local_dir, exist_ok=True)
    with open(os.path.join(local_dir, "sweep.json"), "w") as f:
      json.dump({"config": args.config, "sweep": sweep_name, "seeds": args.seeds,
                 "overrides": fixed, "members": members}, f, indent=1, default=str)
    if todo and args.launcher == "local" and min(args.parallel, len(todo)) > 1:
      try:
        base = apply_overrides(config, fixed_overrides(fixed))
        member_configs = [apply_overrides(base, j.member) for j in todo]
      except (KeyError, ValueError, TypeError):
        member_configs = [config]  # a bad override: its members fail and say so
      if not prepare_datasets(member_configs):
        return 1
    Runner(todo, args.parallel, args.tail).run()

  failed = [j for j in jobs if j.status == "failed"]
  summary = summarize(jobs, local_dir, is_gan, args.metric, args.mode,
                      f"{sweep_name} ({args.config})")
  print(f"Summary of {len(summary['rows'])} runs, sorted by {summary['metric']}: "
        f"{os.path.join(local_dir, 'summary.md')}" + (f", {summary['png']}" if summary["png"] else ""))
  for g in summary["groups"][:10]:
    m, s = g.get(summary["metric"] + ".mean", math.nan), g.get(summary["metric"] + ".std", 0.0)
    print(f"  {fmt(m):>10} ± {fmt(s):<8} {g['member']}")
  interrupted = [j for j in jobs if j.status == "interrupted"]
  if interrupted:
    print(f"{len(interrupted)} runs stopped before finishing; rerun the same command to resume.")
  if failed:
    print(f"\n{len(failed)} of {len(jobs)} runs FAILED:")
    for j in failed:
      print(f"\n--- {j.name} (exit code {j.returncode}); last lines of {j.log}:")
      print(log_tail(j.log, args.tail))
    return 1
  return 130 if interrupted else 0


if __name__ == "__main__":
  sys.exit(main(sys.argv[1:]))
