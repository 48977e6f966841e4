"""Shared fixtures: offline MNIST prepared once per session, tiny configs, subprocess helpers."""

import os
import pathlib
import subprocess
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
MNIST_DIR = os.environ.get("MNIST_DIR", str(REPO.parent / "shared" / "data" / "mnist"))

# A persistent compilation cache keeps reruns of the suite fast; tests never depend on it.
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR",
                      os.path.expanduser("~/.cache/jaxgan/test_compilation_cache"))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


@pytest.fixture(scope="session")
def tfds_dir(tmp_path_factory) -> str:
  """A TFDS data_dir with MNIST prepared from the shared original files, with no network."""
  if not os.path.exists(os.path.join(MNIST_DIR, "train-images-idx3-ubyte.gz")):
    pytest.fail(f"MNIST original files not found in {MNIST_DIR}; set $MNIST_DIR to their folder.")
  d = os.environ.get("TEST_TFDS_DATA_DIR") or str(tmp_path_factory.mktemp("tfds"))
  os.environ["TFDS_DATA_DIR"] = d
  os.environ["TFDS_MANUAL_DIR"] = MNIST_DIR
  # Prepared once here, so that subprocesses started side by side never prepare it concurrently.
  from common import data as data_lib  # pylint: disable=g-import-not-at-top
  data_lib.prepare(load_config("cnn_seed", "test"))
  return d


def load_config(name: str, preset: str = "test", **overrides):
  from ml_collections import config_flags  # pylint: disable=g-import-not-at-top
  del config_flags
  import importlib  # pylint: disable=g-import-not-at-top
  module = importlib.import_module(f"configs.{name}")
  c = module.get_config(preset)
  for key, value in overrides.items():
    target = c
    *parents, leaf = key.split(".")
    for p in parents:
      target = target[p]
    target[leaf] = value
  return c


def run_module(args: list[str], env_extra: dict | None = None, timeout: int = 600,
               **popen) -> subprocess.CompletedProcess:
  env = dict(os.environ, **(env_extra or {}))
  return subprocess.run([sys.executable, *args], cwd=REPO, env=env, capture_output=True,
                        text=True, timeout=timeout, **popen)


def latest_params(workdir: str):
  """The raw state tree of the latest checkpoint in workdir as numpy, and its step.

  Restored as numpy whatever devices saved it: a checkpoint written with 4 devices, or by two
  processes (device ids 2048, 2049 ...), can't take its saved shardings in a 1-device reader.
  """
  import jax  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  import orbax.checkpoint as ocp  # pylint: disable=g-import-not-at-top
  root = pathlib.Path(workdir) / "checkpoints"
  step = max(int(p.name) for p in root.iterdir() if p.name.isdigit())
  checkpointer = ocp.PyTreeCheckpointer()
  meta = checkpointer.metadata(root / str(step) / "state")
  tree = getattr(meta, "item_metadata", meta)
  tree = getattr(tree, "tree", tree)
  restore_args = jax.tree.map(lambda _: ocp.RestoreArgs(restore_type=np.ndarray), tree)
  return checkpointer.restore(root / str(step) / "state", restore_args=restore_args), step
