"""Shared fixtures: offline MNIST prepared once per session, tiny configs, subprocess helpers.

Tests that need MNIST's original files find them through $MNIST_DIR (CI sets it), or use an MNIST
already prepared in $TFDS_DATA_DIR (TFDS downloads it there when online: `python -c "import
tensorflow_datasets as tfds; tfds.builder('mnist').download_and_prepare()"`); without either they
skip, saying so. Every other test uses generated or mock data.

With $CI set (non-empty), what CI provides must be there: a test that would skip for missing data,
a refused tmpfs or a SLURM that isn't installed or doesn't start calls `skip_or_fail`, which fails
it with the same reason. The skips allowed in CI (README, Tests) call pytest.skip directly.
"""

import contextlib
import glob
import os
import pathlib
import subprocess
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
MNIST_DIR = os.environ.get("MNIST_DIR", "")
FASHION_MNIST_DIR = os.environ.get("FASHION_MNIST_DIR", "")

# A persistent compilation cache keeps reruns of the suite fast; tests never depend on it.
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR",
                      os.path.expanduser("~/.cache/jaxgan/test_compilation_cache"))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def skip_or_fail(reason: str) -> None:
  """Skips the test with `reason`; with $CI set, fails it with `reason` instead (see above)."""
  if os.environ.get("CI"):
    pytest.fail(f"{reason} [CI is set: CI provides this, so the test fails instead of "
                "skipping]", pytrace=False)
  pytest.skip(reason)


@pytest.fixture
def mnist_originals() -> str:
  """The folder of MNIST's four original files ($MNIST_DIR), or skip."""
  if not os.path.exists(os.path.join(MNIST_DIR, "train-images-idx3-ubyte.gz")):
    skip_or_fail("needs $MNIST_DIR: the folder of MNIST's four original files")
  return MNIST_DIR


@pytest.fixture(scope="session")
def tfds_dir(tmp_path_factory) -> str:
  """A TFDS data_dir with MNIST prepared from the shared original files, with no network."""
  has_originals = os.path.exists(os.path.join(MNIST_DIR, "train-images-idx3-ubyte.gz"))
  prepared = os.environ.get("TFDS_DATA_DIR", "")
  if not has_originals and not glob.glob(os.path.join(prepared, "mnist", "*", "dataset_info.json")):
    skip_or_fail("needs MNIST: set $MNIST_DIR to the folder of its four original files, or "
                 "prepare mnist in $TFDS_DATA_DIR")
  d = os.environ.get("TEST_TFDS_DATA_DIR") or (
      str(tmp_path_factory.mktemp("tfds")) if has_originals else prepared)
  os.environ["TFDS_DATA_DIR"] = d
  if has_originals:
    os.environ["TFDS_MANUAL_DIR"] = MNIST_DIR
  # Prepared once here, so that subprocesses started side by side never prepare it concurrently.
  from common.data import datasets  # pylint: disable=g-import-not-at-top
  datasets.prepare(load_config("cnn_seed", "test"))
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


@contextlib.contextmanager
def preempted_at(step: int):
  """Within the block, a run in this process stops as if preempted at chunk boundary `step`."""
  from common.run import checkpoint  # pylint: disable=g-import-not-at-top
  original = checkpoint.Preemption.reached
  checkpoint.Preemption.reached = lambda self, s: s == step
  try:
    yield
  finally:
    checkpoint.Preemption.reached = original


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
