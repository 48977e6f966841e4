"""A run's workdir: the files that describe it (config.json, dataset.json), the guard against
resuming another config there, and `restore_run`, which sampling, evaluation, classifier loading
and the benchmark use to read a run back. Workdir files go through etils.epath (local or gs://).
"""

import dataclasses
import datetime
import json
from typing import Any, Callable

import jax
from etils import epath
from jax.experimental import multihost_utils

from common.run import checkpoint
from common import config as cfg
from common.data import datasets
from common.run import reporting

CONFIG_FILE = "config.json"
DATASET_FILE = "dataset.json"
KEEP_ON_ARCHIVE = (".lock", "archive")  # --fresh moves everything else aside


class RunError(RuntimeError):
  """A workdir that holds no run of the expected kind, or another config's run; says what to do."""


def write_run_files(workdir: str, config, info: datasets.DatasetInfo, options: cfg.Options,
                    retired: tuple[str, ...] = ()) -> None:
  """config.json and dataset.json (the metadata models, grids and evaluation were built from),
  after checking the workdir again: another run may have saved there while this one loaded data."""
  check_workdir(workdir, config, options, retired)
  reporting.write_json(workdir, CONFIG_FILE, cfg.to_dict(config))
  reporting.write_json(workdir, DATASET_FILE, info.to_json())


def read_config(workdir: str, options: cfg.Options, retired: tuple[str, ...] = (), what: str = "run"):
  """The run's saved config over today's defaults (options added since take their default)."""
  path = epath.Path(workdir) / CONFIG_FILE
  if not path.exists():
    raise RunError(f"No {what} in {workdir} (no {CONFIG_FILE}): train one there first.")
  try:
    saved = json.loads(path.read_text())
  except (ValueError, UnicodeDecodeError) as e:
    raise RunError(f"{path} is damaged ({e}); restore it from a copy, or train afresh with "
                   "--fresh.") from None
  try:
    return cfg.over_defaults(saved, options, retired)
  except cfg.ConfigError as e:
    raise RunError(f"{workdir} holds no {what}: its {CONFIG_FILE} has {e}.") from None


def read_info(workdir: str, config) -> datasets.DatasetInfo:
  """The run's dataset metadata; runs saved before dataset.json existed ask the dataset."""
  path = epath.Path(workdir) / DATASET_FILE
  saved = json.loads(path.read_text()) if path.exists() else {}
  if "name" in saved:
    return datasets.DatasetInfo.from_json(saved)
  return datasets.dataset_info(config)


def check_workdir(workdir: str, config, options: cfg.Options, retired: tuple[str, ...] = (),
                  fresh: bool = False) -> None:
  """Refuses a workdir whose checkpoints come from another config; with fresh, archives them."""
  wd = epath.Path(workdir)
  if wd.exists() and not wd.is_dir():
    raise RunError(f"--workdir {workdir} is a file, not a folder; pass another --workdir.")
  ckpts = wd / "checkpoints"
  if not (wd / CONFIG_FILE).exists() or not ckpts.exists() or not any(ckpts.iterdir()):
    return
  try:
    saved = cfg.to_dict(read_config(workdir, options, retired))
    diffs = cfg.differences(saved, cfg.to_dict(config), cfg.resumable(options))
  except RunError:
    if not fresh:
      raise
    diffs = ["config.json unreadable"]
  if not diffs:
    return
  if not fresh:
    raise RunError(
        f"Workdir {workdir} holds checkpoints of a different config ({len(diffs)} fields differ: "
        + "; ".join(diffs) + "). Use another --workdir, or pass --fresh to archive the old run "
        "and start afresh.")
  if jax.process_index() == 0:
    archive_run(workdir)
  multihost_utils.sync_global_devices("archive_workdir")


def archive_run(workdir: str) -> str:
  """Moves a workdir's run (everything but its lock and older archives) into
  workdir/archive/<time>/, never deleting; returns that folder."""
  wd = epath.Path(workdir)
  archive = wd / "archive" / datetime.datetime.now().strftime("%Y%m%d-%H%M%S-%f")
  archive.mkdir(parents=True)
  for child in wd.iterdir():
    if child.name not in KEEP_ON_ARCHIVE:
      child.rename(archive / child.name)
  return str(archive)


def recorded_differences(workdir: str, current: dict, options: cfg.Options,
                         retired: tuple[str, ...] = ()) -> list[str] | None:
  """None when workdir holds no run (no config.json); else every key whose recorded value
  differs from `current` (a config as cfg.to_dict gives it; 'config.json unreadable' when it
  can't be read)."""
  if not (epath.Path(workdir) / CONFIG_FILE).exists():
    return None
  try:
    saved = cfg.to_dict(read_config(workdir, options, retired))
  except RunError:
    return [f"{CONFIG_FILE} unreadable"]
  return cfg.differences(saved, current)


def parse_step(step: int | str) -> int | str | None:
  """A checkpoint to read ('latest', 'best' or a step number, as text or int) as restore_run
  takes it: None for the latest."""
  if step in ("latest", "best"):
    return None if step == "latest" else step
  if isinstance(step, int) and step >= 0 or isinstance(step, str) and step.isdigit():
    return int(step)
  raise RunError(f"step={step!r}: use latest, best or a step number.")


@dataclasses.dataclass(frozen=True)
class Restored:
  """A run read back: its config, its dataset's metadata, and one checkpoint's state."""
  config: Any
  info: datasets.DatasetInfo
  state: Any
  step: int
  meta: dict


def restore_run(workdir: str, options: cfg.Options, template: Callable[[Any, datasets.DatasetInfo], Any],
                *, retired: tuple[str, ...] = (), step: int | str | None = None,
                what: str = "run") -> Restored:
  """Reads a run back: config, metadata, and the latest, the best (step='best', kept by
  config.best_metric) or step N's checkpoint.

  `template(config, info)` builds a state of the right structure, shapes and shardings (values
  unused); the checkpoint is only read.
  """
  config = read_config(workdir, options, retired, what)
  info = read_info(workdir, config)
  folder = checkpoint.BEST if step == "best" else checkpoint.LATEST
  if not (epath.Path(workdir) / folder).exists():
    raise RunError(f"No checkpoint in {workdir}/{folder}: train there first" + (
        " with --config.best_metric set." if step == "best" else "."))
  step = None if step == "best" else step
  ckpts = checkpoint.Checkpoints(workdir, max_to_keep=10**6, read_only=True, folder=folder)
  try:
    if ckpts.latest_step() is None:
      raise RunError(f"No checkpoint in {workdir}: train there first.")
    if step is not None and step not in ckpts.manager.all_steps():
      raise RunError(f"No checkpoint of step {step} in {workdir}; it has steps "
                     f"{', '.join(map(str, ckpts.manager.all_steps()))}.")
    state, meta = ckpts.restore(template(config, info), step)
    step = ckpts.restored_step
  finally:
    ckpts.close()
  return Restored(config, info, state, step, meta)
