"""What every entry point shares: config flags, process setup, the workdir lock, and one-line
errors for everything the user can fix (a traceback only with --debug)."""

import json
import os
import sys
from typing import Callable

import jax
from absl import app, flags, logging
from etils import epath
from ml_collections import config_flags

from common import config as cfg
from common.run import runs
from common.run import workdir_lock
from common.run import entry
from common.run.entry import USER_ERRORS, enable_compilation_cache

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "Config file, e.g. configs/cnn_seed.py[:preset].")
flags.DEFINE_string("workdir", None, "Checkpoints, logs and results; default runs/<config.name>.")
flags.DEFINE_bool("fresh", False, "Archive a workdir holding another config's run and start afresh.")
flags.DEFINE_bool("options", False, "List every config option (value, default, description) and exit.")
flags.DEFINE_bool("distributed", None, "Call jax.distributed.initialize(); default: auto-detect "
                  "(TPU pods, SLURM, or JAX_COORDINATOR_ADDRESS set).")
flags.DEFINE_bool("debug", False, "Show the traceback of errors otherwise reported in one line.")

def _parser(options: cfg.Options) -> Callable[[list[str]], list[str]]:
  """The flags parser of a training main: --help with the config options, one-line errors."""
  names = [f.name for f in FLAGS.get_flags_for_module(__name__)] + [f"config.{k}" for k in options]

  def parse(argv: list[str]) -> list[str]:
    _check_config_file(argv)
    try:
      return entry.parse_flags(argv, names, lambda: _help(argv, options))
    except flags.Error as e:
      text = str(e)
      if "Traceback" in text:  # an exception inside the config file: keep its own message
        lines = [line for line in text.splitlines() if line.strip()]
        text = f"{argv_config(argv)}: {lines[-1]}"
      sys.exit(f"Error: {' '.join(text.split())}")
    except (AttributeError, KeyError):  # an override of a key the config file lacks
      bad = next((a for a in argv[1:] if a.startswith("--config.")), "--config.")
      hint = entry.nearest(bad[2:].partition("=")[0], names)
      sys.exit(f"Error: {bad}: unknown config option" + (f"; did you mean --{hint}?" if hint
                                                      else "; --options lists them."))
    except Exception as e:  # pylint: disable=broad-except
      sys.exit(f"Error: {type(e).__name__}: {' '.join(str(e).split())}")

  return parse


def _help(argv: list[str], options: cfg.Options) -> str:
  """The main's docstring, its flags, and every config option (with --config's values if given)."""
  doc = (sys.modules["__main__"].__doc__ or "").strip()
  config = cfg.defaults(options)
  rest = [a for a in argv if a not in entry.HELP_FLAGS]
  try:
    if FLAGS(rest) and FLAGS.config is not None:
      config = FLAGS.config
  except Exception:  # pylint: disable=broad-except
    pass  # a bad --config: show the defaults; running without --help reports the error
  return (f"{doc}\n\nFlags:\n{entry.flags_help(__name__)}\n  --config.KEY=VALUE: override a "
          f"config option\n\nConfig options:\n{cfg.describe(config, options)}")


def _check_config_file(argv: list[str]) -> None:
  """A missing --config file in one line (ml_collections reports it later, with a traceback)."""
  path = argv_config(argv).partition("=")[2].split(":", 1)[0]
  if path and not os.path.isfile(path):
    folder = os.path.dirname(path) or "."
    known = sorted(f for f in os.listdir(folder) if f.endswith(".py") and not f.startswith("_")
                   ) if os.path.isdir(folder) else []
    sys.exit(f"Error: config file {path} not found" + (
        f"; those in {folder}/: {', '.join(known)}." if known else "; check the path."))


def check_saved_config(workdir: str) -> None:
  """A workdir's config.json that a crash or an edit left unreadable, in one line."""
  path = epath.Path(workdir) / runs.CONFIG_FILE
  if not path.exists():
    return
  try:
    ok = isinstance(json.loads(path.read_text()), dict)
    why = "not a JSON object"
  except (OSError, ValueError) as e:
    ok, why = False, str(e) or "empty"
  if not ok:
    raise runs.RunError(
        f"{path} is unreadable ({why}). If the run in {workdir} used this --config, delete that "
        "file and rerun to resume (it is written again from --config); otherwise use another "
        "--workdir.")


def argv_config(argv: list[str]) -> str:
  return next((a for a in argv if a.startswith("--config=")), "--config")


def _maybe_initialize_distributed() -> None:
  wanted = FLAGS.distributed
  if wanted is None:
    wanted = bool(os.environ.get("JAX_COORDINATOR_ADDRESS") or os.environ.get("SLURM_NTASKS", "1") != "1"
                  or os.environ.get("TPU_WORKER_HOSTNAMES", "").count(",") > 0)
  if wanted:
    kwargs = {arg: int(os.environ[var]) for arg, var in
              (("num_processes", "JAX_NUM_PROCESSES"), ("process_id", "JAX_PROCESS_ID"))
              if os.environ.get(var)}
    jax.distributed.initialize(**kwargs)  # jax itself reads only JAX_COORDINATOR_ADDRESS


def run(train_and_evaluate: Callable, options: cfg.Options) -> None:
  """app.run for `python -m <pkg>.main --config=FILE [--workdir=DIR] [--config.key=value ...]`.

  `options` are the run's declared config options: validated against, and listed by --options.
  """

  def main(argv):
    if len(argv) > 1:
      sys.exit(f"Error: unexpected arguments {argv[1:]}; flags take the form --name=value.")
    if FLAGS.config is None:
      sys.exit("Error: --config=FILE is required, e.g. --config=configs/cnn_seed.py.")
    if FLAGS.options:
      print(cfg.describe(FLAGS.config, options))
      return
    if not FLAGS["verbosity"].present:
      logging.set_verbosity(logging.WARNING)  # orbax and TFDS are chatty at INFO
    _maybe_initialize_distributed()
    enable_compilation_cache()
    config = FLAGS.config
    workdir = FLAGS.workdir or os.path.join("runs", config.name)
    logging.info("Process %d/%d, devices: %s", jax.process_index(), jax.process_count(),
                 jax.devices())
    results = _train_reporting_errors(train_and_evaluate, config, workdir)
    if results.get("preempted"):
      logging.info("Preempted; checkpoint saved. Rerun the same command to resume.")

  app.run(main, flags_parser=_parser(options))


def _train_reporting_errors(train_and_evaluate: Callable, config, workdir: str) -> dict:
  """Runs training holding the workdir's lock; user errors and Ctrl-C end in one line."""
  try:
    with workdir_lock.hold(workdir, argv=sys.argv):
      if not FLAGS.fresh:
        check_saved_config(workdir)
      return train_and_evaluate(config, workdir, fresh=FLAGS.fresh)[1]
  except USER_ERRORS as e:
    if FLAGS.debug:
      raise
    sys.exit(f"Error: {e}")
  except KeyboardInterrupt:  # a second Ctrl-C while training, or one before it started
    if FLAGS.debug:
      raise
    print("Interrupted: stopped without saving; rerun the same command to resume from the last "
          "checkpoint.", file=sys.stderr)
    sys.exit(130)
