"""What every command-line entry point shares: user errors as one line, the compilation cache.

Training entry points add their flags in common.cli; tools (gan.sample, gan.evaluate) define
their own flags and call `run_tool`.
"""

import os
import sys
from typing import Callable

import jax
from absl import app, logging

from common import checkpoint
from common import config as cfg
from common import datasets
from common import loop
from common import reporting
from common import runs
from common import workdir_lock

# Errors the user can fix; each is reported as one line, without a traceback.
USER_ERRORS = (cfg.ConfigError, datasets.DataError, runs.RunError, loop.NonFiniteError,
               checkpoint.CheckpointError, reporting.WriteError, workdir_lock.WorkdirLockError,
               FileNotFoundError)


def enable_compilation_cache() -> None:
  """JAX's persistent compilation cache, so reruns and sweep members skip recompiling.

  $JAX_COMPILATION_CACHE_DIR (read by JAX itself) overrides the default user cache directory.
  """
  if not os.environ.get("JAX_COMPILATION_CACHE_DIR"):
    cache = os.path.join(os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")),
                         "jaxgan", "jax_compilation_cache")
    jax.config.update("jax_compilation_cache_dir", cache)


def parse_step(text: str) -> int | str | None:
  """--step: 'latest' (None), 'best', or a step number."""
  if text in ("latest", "best"):
    return None if text == "latest" else text
  if not text.isdigit():
    sys.exit(f"Error: --step={text!r}: use latest, best or a step number.")
  return int(text)


def run_tool(main: Callable) -> None:
  """app.run for a command-line tool (sampling, evaluation): user errors as one line."""

  def guarded(argv):
    logging.set_verbosity(logging.WARNING)
    enable_compilation_cache()
    try:
      main(argv)
    except USER_ERRORS as e:
      sys.exit(f"Error: {e}")

  app.run(guarded)
