"""What every command-line entry point shares: user errors as one line, the compilation cache.

Training entry points add their flags in common.run.cli; tools (gan.sample, gan.evaluate) define
their own flags and call `run_tool`.
"""

import difflib
import os
import sys
from typing import Callable

import jax
from absl import app, flags, logging

from common.run import checkpoint
from common import config as cfg
from common.data import datasets
from common.run import loop
from common.run import reporting
from common.run import runs
from common.run import workdir_lock

# Errors the user can fix; each is reported as one line, without a traceback.
USER_ERRORS = (cfg.ConfigError, datasets.DataError, runs.RunError, loop.NonFiniteError,
               checkpoint.CheckpointError, reporting.WriteError, workdir_lock.WorkdirLockError,
               FileNotFoundError)


def enable_compilation_cache() -> None:
  """JAX's persistent compilation cache, so reruns and sweep members skip recompiling.

  $JAX_COMPILATION_CACHE_DIR (read by JAX itself) overrides the default user cache directory.
  Off for several processes on CPU: on jax 0.12.1 their executables read back from the cache hang
  at the first cross-process (Gloo) collective, so a resumed 2-process CPU run never trained.
  """
  if jax.process_count() > 1 and jax.default_backend() == "cpu":
    jax.config.update("jax_enable_compilation_cache", False)
    return
  if not os.environ.get("JAX_COMPILATION_CACHE_DIR"):
    cache = os.path.join(os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")),
                         "jaxgan", "jax_compilation_cache")
    jax.config.update("jax_compilation_cache_dir", cache)


HELP_FLAGS = ("--help", "-h", "--helpshort", "-?")


def flags_help(module: str) -> str:
  """One line per flag that `module` defines: name, help, default."""
  lines = []
  for flag in flags.FLAGS.get_flags_for_module(module):
    default = "" if flag.default is None else f" (default: {flag.default!r})"
    lines.append(f"  --{flag.name}: {flag.help}{default}")
  return "\n".join(lines)


def nearest(name: str, names: list[str]) -> str | None:
  """The name in `names` closest to `name`, whole or by its last dotted part; None if none is."""
  by_part = {n.rsplit(".", 1)[-1]: n for n in names}
  close = difflib.get_close_matches(name, names, n=1, cutoff=0.6) or difflib.get_close_matches(
      name.rsplit(".", 1)[-1], list(by_part), n=1, cutoff=0.6)
  return (close[0] if close[0] in names else by_part[close[0]]) if close else None


def parse_flags(argv: list[str], names: list[str], help_text: Callable[[], str]) -> list[str]:
  """absl's parsing, but --help prints `help_text()` and exits 0 (absl's lists other modules'
  flags and exits 1), and an unknown flag is one line naming the nearest of `names`."""
  if any(a in HELP_FLAGS for a in argv[1:]):
    print(help_text())
    sys.exit(0)
  try:
    return flags.FLAGS(argv)
  except flags.UnrecognizedFlagError as e:
    hint = nearest(e.flagname, names)
    what = "config option" if e.flagname.startswith("config.") else "flag"
    sys.exit(f"Error: unknown {what} --{e.flagname}" + (f"; did you mean --{hint}?" if hint else "")
             + " (--help lists the flags" + (" and config options)." if any(
                 n.startswith("config.") for n in names) else ")."))


def run_tool(main: Callable) -> None:
  """app.run for a command-line tool (sampling, evaluation): user errors as one line."""
  module = sys.argv[0]
  names = [f.name for f in flags.FLAGS.get_flags_for_module(module)]
  doc = sys.modules["__main__"].__doc__ or ""
  help_text = lambda: f"{doc.strip()}\n\nFlags:\n{flags_help(module)}"  # pylint: disable=unnecessary-lambda-assignment

  def guarded(argv):
    logging.set_verbosity(logging.WARNING)
    enable_compilation_cache()
    try:
      main(argv)
    except USER_ERRORS as e:
      sys.exit(f"Error: {e}")

  app.run(guarded, flags_parser=lambda argv: parse_flags(argv, names, help_text))
