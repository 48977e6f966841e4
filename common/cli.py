"""What every entry point shares: config flags, process setup, one-line errors for bad input."""

import os
import sys
from typing import Callable

import jax
from absl import app, flags, logging
from ml_collections import config_flags

from common import config as cfg
from common.entry import USER_ERRORS, enable_compilation_cache

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "Config file, e.g. configs/cnn_seed.py[:preset].")
flags.DEFINE_string("workdir", None, "Checkpoints, logs and results; default runs/<config.name>.")
flags.DEFINE_bool("fresh", False, "Archive a workdir holding another config's run and start afresh.")
flags.DEFINE_bool("keys", False, "List every config key (value, default, description) and exit.")
flags.DEFINE_bool("distributed", None, "Call jax.distributed.initialize(); default: auto-detect "
                  "(TPU pods, SLURM, or JAX_COORDINATOR_ADDRESS set).")

def _parse(argv: list[str]) -> list[str]:
  try:
    return FLAGS(argv)
  except flags.Error as e:
    text = str(e)
    if "Traceback" in text:  # an exception inside the config file: keep its own message
      lines = [line for line in text.splitlines() if line.strip()]
      text = f"{argv_config(argv)}: {lines[-1]}"
    sys.exit(f"Error: {text}")
  except (AttributeError, KeyError) as e:  # an override of a key the config doesn't have
    bad = [a for a in argv[1:] if a.startswith("--config.")]
    sys.exit(f"Error: unknown config key in {' '.join(bad)} ({e}); run with --config=FILE "
             "and look at the file's get_config() for the keys.")
  except Exception as e:  # pylint: disable=broad-except
    sys.exit(f"Error: {type(e).__name__}: {e}")


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


def run(train_and_evaluate: Callable, keys: cfg.Keys) -> None:
  """app.run for `python -m <pkg>.main --config=FILE [--workdir=DIR] [--config.key=value ...]`.

  `keys` are the run's declared config keys: validated against, and listed by --keys.
  """

  def main(argv):
    if len(argv) > 1:
      sys.exit(f"Error: unexpected arguments {argv[1:]}; flags take the form --name=value.")
    if FLAGS.config is None:
      sys.exit("Error: --config=FILE is required, e.g. --config=configs/cnn_seed.py.")
    if FLAGS.keys:
      print(cfg.describe(FLAGS.config, keys))
      return
    if not FLAGS["verbosity"].present:
      logging.set_verbosity(logging.WARNING)  # orbax and TFDS are chatty at INFO
    _maybe_initialize_distributed()
    enable_compilation_cache()
    config = FLAGS.config
    workdir = FLAGS.workdir or os.path.join("runs", config.name)
    logging.info("Process %d/%d, devices: %s", jax.process_index(), jax.process_count(),
                 jax.devices())
    try:
      _, results = train_and_evaluate(config, workdir, fresh=FLAGS.fresh)
    except USER_ERRORS as e:
      sys.exit(f"Error: {e}")
    if results.get("preempted"):
      logging.info("Preempted; checkpoint saved. Rerun the same command to resume.")

  app.run(main, flags_parser=_parse)
