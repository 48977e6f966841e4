"""Multi-process data parallelism on one machine: 2 processes x 2 CPU devices == 1 process x 4.

Each process runs `python -m cnn.main ... --distributed`; jax.distributed.initialize() takes the
coordinator from $JAX_COORDINATOR_ADDRESS and the process count and id from SLURM's variables (this
jax reads no JAX_NUM_PROCESSES / JAX_PROCESS_ID), exactly as under `srun`. CPU collectives across
processes go through gloo (jax's default; set explicitly here).
"""

import os
import pathlib
import socket
import subprocess
import sys

import jax
import numpy as np

from conftest import REPO

ARGS = ["-m", "cnn.main", "--config=configs/cnn_seed.py:test", "--config.num_epochs=1"]
TOLERANCE = 1e-5


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("localhost", 0))
    return s.getsockname()[1]


def _start(args, env_extra, log):
  env = dict(os.environ, JAX_PLATFORMS="cpu", **env_extra)
  return subprocess.Popen([sys.executable, *args], cwd=REPO, env=env, stdout=log,
                          stderr=subprocess.STDOUT)


def _state(workdir):
  """The latest checkpoint's state as numpy, whatever devices saved it.

  (conftest.latest_params restores with the saved shardings, whose device ids 2048, 2049 of the
  second process don't exist in a one-process reader.)
  """
  import orbax.checkpoint as ocp  # pylint: disable=g-import-not-at-top
  root = pathlib.Path(workdir) / "checkpoints"
  step = max(int(p.name) for p in root.iterdir() if p.name.isdigit())
  checkpointer = ocp.PyTreeCheckpointer()
  meta = checkpointer.metadata(root / str(step) / "state")
  tree = getattr(meta, "item_metadata", meta)
  tree = getattr(tree, "tree", tree)
  restore_args = jax.tree.map(lambda _: ocp.RestoreArgs(restore_type=np.ndarray), tree)
  return checkpointer.restore(root / str(step) / "state", restore_args=restore_args), step


def test_two_processes_match_one_process(tfds_dir, tmp_path):
  multi, single = tmp_path / "multi", tmp_path / "single"
  port = _free_port()
  procs, logs = [], []
  for i in range(2):
    log = open(tmp_path / f"process{i}.log", "w")
    logs.append(log)
    procs.append(_start(ARGS + [f"--workdir={multi}", "--distributed"], {
        "XLA_FLAGS": "--xla_force_host_platform_device_count=2",
        "JAX_CPU_COLLECTIVES_IMPLEMENTATION": "gloo",
        "JAX_COORDINATOR_ADDRESS": f"localhost:{port}",
        "SLURM_JOB_ID": "1", "SLURM_STEP_NODELIST": "localhost", "SLURM_NTASKS": "2",
        "SLURM_PROCID": str(i), "SLURM_LOCALID": str(i)}, log))
  log = open(tmp_path / "single.log", "w")
  logs.append(log)
  procs.append(_start(ARGS + [f"--workdir={single}"],
                      {"XLA_FLAGS": "--xla_force_host_platform_device_count=4"}, log))
  try:
    codes = [p.wait(timeout=400) for p in procs]
  finally:
    for p in procs:
      if p.poll() is None:
        p.kill()
    for f in logs:
      f.close()
  out = [(tmp_path / n).read_text() for n in ("process0.log", "process1.log", "single.log")]
  assert codes == [0, 0, 0], "\n\n".join(o[-3000:] for o in out)
  # Only process 0 reports; both saw the 4 global devices (18 steps of 32 examples per device).
  assert "Epoch 1/1 - 16/16" in out[0] and "Epoch 1/1" not in out[1]
  assert "Epoch 1/1 - 16/16" in out[2]

  multi_state, multi_step = _state(multi)
  single_state, single_step = _state(single)
  assert multi_step == single_step == 16
  flat_multi = jax.tree_util.tree_leaves_with_path(multi_state["params"])
  flat_single = jax.tree.leaves(single_state["params"])
  assert len(flat_multi) == len(flat_single) > 0
  for (path, a), b in zip(flat_multi, flat_single):
    np.testing.assert_allclose(a, b, rtol=0, atol=TOLERANCE, err_msg=jax.tree_util.keystr(path))
