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
old run is first moved, never deleted, to WORKDIR/archive/<time>/, and the sweep says which options
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
import math
import os
import shlex
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
  sys.path.insert(0, REPO)

# pylint: disable=g-import-not-at-top,wrong-import-position
from common import sweeps
from scripts.sweeping import members as members_lib
from scripts.sweeping import record as record_lib
from scripts.sweeping import runner as runner_lib
from scripts.sweeping import slurm
from scripts.sweeping import summary as summary_lib
from scripts.sweeping.members import Job, is_url


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
                 f"the default of the same name ({' '.join(slurm.SLURM_DEFAULTS)})")
  p.add_argument("--slurm-setup", action="append", default=[], metavar="LINE",
                 help="--launcher=slurm: a shell line the batch scripts run first, e.g. "
                 "'module load cuda' (repeat)")
  p.add_argument("--metric", help="sort and plot by this results key (dotted); default "
                 "test.accuracy for CNNs, eval.inception_fid or eval.fid for GANs")
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


def fixed_overrides(args, members: list[dict]) -> list[str]:
  """--overrides / --config.key=value for every member, as key=value; refuses swept options."""
  fixed = []
  swept = {k for m in members for k in sweeps.config_overrides(m)}
  for kv in args.overrides:
    key = kv.removeprefix("--config.").partition("=")[0]
    if "=" not in kv or not key:
      raise SystemExit(f"Error: --overrides {kv!r}: use key=value.")
    if key in swept or key == "seed":
      raise SystemExit(f"Error: --overrides {key} is swept (or the seed); drop it.")
    fixed.append(kv.removeprefix("--config."))
  return fixed


def make_jobs(members: list[dict], seeds: int, base_seed: int, sweep_dir: str,
              local_dir: str) -> list[Job]:
  jobs = []
  for member in members:
    group = sweeps.member_name(member)
    for seed in range(base_seed, base_seed + seeds):
      name = sweeps.member_name({**member, "seed": seed})
      jobs.append(Job(member, seed, group, name, f"{sweep_dir}/{name}",
                      os.path.join(local_dir, name, "log.txt")))
  return jobs


def set_commands(args, jobs: list[Job], module: str, config_path: str, preset: str,
                 fixed: list[str], sweep_dir: str):
  """Each job's command; returns (TPU slices or None, the per-slice command builder, config arg)."""
  if args.launcher != "tpu":
    config_arg = config_path + (f":{preset}" if preset else "")
    for job in jobs:
      job.cmd = members_lib.local_command(job, module, config_arg, fixed)
    return None, None, config_arg
  if not (args.tpu_name and args.tpu_zone):
    raise SystemExit("Error: --launcher=tpu needs --tpu-name and --tpu-zone.")
  slices = list(dict.fromkeys(n.strip() for n in args.tpu_name.split(",") if n.strip()))
  if not slices:
    raise SystemExit("Error: --tpu-name: give one or more slice names, a,b,c.")
  if not is_url(sweep_dir):
    print("Warning: a multi-host TPU slice needs a shared workdir: pass --workdir=gs://...",
          file=sys.stderr)
  config_arg = os.path.relpath(config_path, REPO) + (f":{preset}" if preset else "")
  command = lambda job, slot: members_lib.tpu_command(job, module, config_arg, fixed, args, slot)
  for i, job in enumerate(jobs):  # what a dry run shows: the slices in turn
    job.cmd = command(job, slices[i % len(slices)])
  if args.parallel and args.parallel != len(slices):
    print(f"Note: --launcher=tpu runs one member per slice at a time ({len(slices)} at once).",
          file=sys.stderr)
  return slices, command, config_arg


def checked_configs(config, members: list[dict], jobs: list[Job], fixed: list[str],
                    is_gan: bool):
  """Validates every member's config before anything runs; records each job's whole config."""
  try:
    base = members_lib.apply_overrides(config, members_lib.fixed_overrides(fixed))
  except (KeyError, ValueError, TypeError) as e:
    print(f"Error: --overrides: {e}", file=sys.stderr)
    raise SystemExit(2) from None
  errors = members_lib.check_members(base, members, is_gan)
  if errors:
    print("Error: invalid members (nothing was started):\n  " + "\n  ".join(errors),
          file=sys.stderr)
    raise SystemExit(2)
  for job in jobs:
    job.config = members_lib.member_config(base, job)
  return base


def dry_run(jobs: list[Job], slurm_files: dict | None, slurm_dir: str) -> int:
  for j in jobs:
    if j.status == "finished":
      print(f"# {j.name}: finished")
      continue
    if j.changed:
      print(f"# {j.name}: config changed ({members_lib.describe_changes(j.changed)}); its run "
            "would be archived and run afresh")
    if not slurm_files:
      print(shlex.join(j.cmd))
  return slurm.submit_slurm(slurm_files, slurm_dir, dry_run=True) if slurm_files else 0


def run_members(args, jobs: list[Job], base, slices, command, slurm_files, slurm_dir: str,
                local_dir: str, record: dict) -> int | None:
  """Archives changed members' old runs, prepares datasets, then runs (or submits) the rest."""
  for j in jobs:
    if j.status == "finished":
      print(f"  skip {j.name} (finished)")
  record_lib.write_record(local_dir, record)
  runner_lib.archive_changed([j for j in jobs if j.status == "pending" and j.changed])
  todo = [j for j in jobs if j.status == "pending"]
  at_once = {"local": args.parallel or 1, "tpu": 1, "slurm": len(todo)}[args.launcher]
  if todo and min(at_once, len(todo)) > 1:
    member_configs = [members_lib.apply_overrides(base, j.member) for j in todo]
    if not runner_lib.prepare_datasets(member_configs):
      return 1
  if slurm_files:
    return slurm.submit_slurm(slurm_files, slurm_dir, dry_run=False)
  runner_lib.Runner(todo, args.parallel or 1, args.tail, slots=slices, command=command).run()
  return None


def report(args, jobs: list[Job], summary: dict, local_dir: str) -> int:
  """The console's summary: the ranking, then what stopped, ran elsewhere or failed."""
  print(f"Summary of {len(summary['rows'])} runs, sorted by {summary['metric']}: "
        f"{os.path.join(local_dir, 'summary.md')}" + (f", {summary['png']}" if summary["png"] else ""))
  if summary["metric"] is None:
    print("  " + summary_lib.NOT_RANKED.format(", ".join(summary_lib.GAN_QUALITY)))
  fmt = summary_lib.fmt
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
  failed = [j for j in jobs if j.status == "failed"]
  if failed:
    print(f"\n{len(failed)} of {len(jobs)} runs FAILED:")
    for j in failed:
      print(f"\n--- {j.name} (exit code {j.returncode}); last lines of {j.log}:")
      print(runner_lib.log_tail(j.log, args.tail))
    return 1
  return 130 if interrupted else 0


def main(argv: list[str]) -> int:
  try:
    return run(parse(argv))
  except SystemExit as e:
    if isinstance(e.code, int):
      return e.code
    raise


def run(args) -> int:
  config_path, preset = members_lib.split_config_arg(args.config)
  config_path = os.path.abspath(config_path)
  config_module = members_lib.load_module(config_path, "sweep_config")
  config = config_module.get_config(preset)
  is_gan = "loss" in config
  module = "gan.main" if is_gan else "cnn.main"
  sweep_name, members = members_lib.resolve_members(args, config_module)
  try:
    sweeps.check_names(members)
  except ValueError as e:
    raise SystemExit(f"Error: {e}") from None
  fixed = fixed_overrides(args, members)
  sweep_dir = args.workdir or os.path.join("runs", "sweeps", sweep_name)
  if is_url(sweep_dir):  # gs://: runs write there; logs and summaries stay on this machine
    local_dir = os.path.join(REPO, "runs", "sweeps", sweep_name)
  else:
    sweep_dir = local_dir = os.path.abspath(sweep_dir)
  jobs = make_jobs(members, args.seeds, config.seed, sweep_dir, local_dir)
  slices, command, config_arg = set_commands(args, jobs, module, config_path, preset, fixed,
                                             sweep_dir)
  base = checked_configs(config, members, jobs, fixed, is_gan)
  record = record_lib.sweep_record(args, config_path, preset, sweep_name, fixed, members)
  record_lib.check_record(local_dir, record)
  # A dry run of a gs:// sweep prints the commands without asking the bucket what is done.
  if not (args.dry_run and is_url(sweep_dir)):
    members_lib.classify(jobs, is_gan)
  todo = [j for j in jobs if j.status == "pending"]
  changed = [j for j in todo if j.changed]
  print(f"Sweep {sweep_name}: {len(members)} members x {args.seeds} seeds = {len(jobs)} runs of "
        f"{module} in {sweep_dir} ({len(jobs) - len(todo)} finished, {len(todo)} to run"
        + (f", {len(changed)} of them afresh: their recorded config differs" if changed else "")
        + ")", flush=True)
  slurm_dir = os.path.join(local_dir, "slurm")
  slurm_files = None
  if args.launcher == "slurm" and todo and not args.summarize:
    slurm_files = slurm.slurm_files(todo, args, sweep_name, slurm_dir,
                                    slurm.summary_command(args, config_arg, sweep_dir, fixed))
  if args.dry_run:
    return dry_run(jobs, slurm_files, slurm_dir)
  if not args.summarize:
    code = run_members(args, jobs, base, slices, command, slurm_files, slurm_dir, local_dir, record)
    if code is not None:
      return code
  summary = summary_lib.summarize(jobs, local_dir, is_gan, args.metric, args.mode,
                                  f"{sweep_name} ({args.config})")
  return report(args, jobs, summary, local_dir)


if __name__ == "__main__":
  sys.exit(main(sys.argv[1:]))
