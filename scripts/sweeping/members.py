"""A sweep's members: the override sets and seeds it runs, their configs, names and commands,
and whether each member's recorded run is the one asked for now."""

import ast
import dataclasses
import importlib.util
import json
import os
import sys

from etils import epath
from ml_collections.config_flags import config_path as ml_config_path

from common.run import reporting
from common import sweeps

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def is_url(path: str) -> bool:
  """A gs:// (or other remote) path: members' logs and the sweep's summaries then stay local."""
  return not reporting.is_local(path)


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
  changed: list[str] = dataclasses.field(default_factory=list)  # recorded -> asked-for options

  @property
  def marker(self) -> str:
    """SWEEP_DIR/<member>/.running (beside log.txt): the pid and host running this member."""
    return os.path.join(os.path.dirname(self.log), ".running")


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
  """(options, retired) of the members' kind of run."""
  if is_gan:
    from gan import options  # pylint: disable=g-import-not-at-top
  else:
    from cnn import options  # pylint: disable=g-import-not-at-top
  return options.OPTIONS, options.RETIRED


def recorded_differences(job: Job, is_gan: bool) -> list[str] | None:
  """None when the member's workdir holds no run; else the options whose recorded value differs
  from the config asked for now ([] when it is the same run)."""
  from common.run import runs  # pylint: disable=g-import-not-at-top
  try:
    options, retired = key_table(is_gan)
    return runs.recorded_differences(job.workdir, job.config, options, retired)
  except Exception as e:  # pylint: disable=broad-except  # unreadable (no credentials, network)
    return [f"config.json unreadable ({type(e).__name__})"]


def has_current_results(job: Job, is_gan: bool) -> bool:
  """results.json exists and was made by the config asked for now."""
  return finished(job.workdir) and recorded_differences(job, is_gan) == []


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
  (ConfigDict.update_from_flattened_dict would silently add unknown options instead.)
  """
  config = config.copy_and_resolve_references()
  for key, value in sweeps.config_overrides(overrides).items():
    try:
      ml_config_path.set_value(key, config, value)
    except (KeyError, AttributeError, IndexError):
      raise KeyError(f"unknown config option {key!r}") from None
  return config


def fixed_overrides(fixed: list[str]) -> dict:
  """--overrides key=value strings as a dict of Python values."""
  return {k: parse_value(v) for k, _, v in (kv.partition("=") for kv in fixed)}


def check_members(config, members: list[dict], is_gan: bool) -> list[str]:
  """Validates every member's config in this process; returns one error line per bad member."""
  if is_gan:
    from gan.options import validate as check  # pylint: disable=g-import-not-at-top
  else:
    from cnn.options import validate as check  # pylint: disable=g-import-not-at-top
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
