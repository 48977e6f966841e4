"""scripts/bench.py: throughput rows, XLA's FLOP count, the roofline fractions, the CPU in each row
and (with a python that has torch in $PEER_PYTHON) the torch peers, eager and compiled."""

import json
import os
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest
from conftest import run_module


def test_bench_counts_flops_and_reports_the_roofline(tfds_dir):
  r = run_module(["scripts/bench.py", "--config=configs/cnn_seed.py:test", "--steps=2",
                  "--repeats=1", "--roofline", "--json"])
  assert r.returncode == 0, r.stderr[-3000:]
  out = json.loads(r.stdout[r.stdout.index("{"):])
  row, meta = out["rows"][0], out["meta"]
  steps_per_epoch = row["epoch_s"] * 1e3 / row["ms_per_step"]
  # The course CNN's step: conv 3x3x1x16 on 26x26, dense 2704x10 and 10x10, forward and backward
  # (about 3x forward): 2 * (26*26*9*16 + 2704*10 + 10*10) * 3 = 746,976 FLOPs per image; XLA
  # also counts the unrolled threefry's integer ops for the 2,714 dropout draws (~140 each).
  per_image = row["flops_per_epoch"] / steps_per_epoch / row["batch"]
  assert 0.9e6 < per_image < 1.3e6, per_image
  assert meta["matmul_flops_per_s"] > 1e9 and meta["bytes_per_s"] > 1e8
  assert 0.0 < row["flops_fraction"] < 1.0
  # On CPU every row names the CPU and its speed-relevant flags; --roofline adds the matmul rate.
  assert set(row["cpu_flags"]) == {"avx2", "avx512f", "amx_tile", "amx_bf16"}
  assert row["cpu_model"] == meta["cpu_model"] and row["matmul_flops_per_s"] > 1e9
  if sys.platform.startswith("linux"):
    assert row["cpu_model"].strip()


def test_cpu_info_reads_the_model_name_and_flags():
  r = run_module(["-c", "import json; from scripts import machine; "
                  "print(json.dumps(machine.cpu_info()))"], timeout=120)
  assert r.returncode == 0, r.stderr[-3000:]
  info = json.loads(r.stdout.strip().splitlines()[-1])
  assert isinstance(info["cpu_model"], str)
  assert set(info["cpu_flags"]) == {"avx2", "avx512f", "amx_tile", "amx_bf16"}
  if os.path.exists("/proc/cpuinfo"):
    text = open("/proc/cpuinfo", encoding="utf-8").read()
    names = [l.split(":", 1)[1].strip() for l in text.splitlines() if l.startswith("model name")]
    flags = next((set(l.split(":", 1)[1].split()) for l in text.splitlines()
                  if l.startswith(("flags", "Features"))), set())
    if names:
      assert info["cpu_model"] == names[0]
    assert info["cpu_flags"] == {f: f in flags for f in info["cpu_flags"]}
  if sys.platform.startswith("linux"):
    assert info["cpu_model"].strip()


@pytest.fixture(scope="session")
def peer_python() -> str:
  """$PEER_PYTHON if that python imports torch, else skip (before MNIST is prepared): CI has no
  torch."""
  py = os.environ.get("PEER_PYTHON", "")
  if not py:
    pytest.skip("needs $PEER_PYTHON: a python with torch (CI has none), e.g. "
                "python3 -m venv PEERS && PEERS/bin/pip install torch")
  r = subprocess.run([py, "-c", "import torch"], capture_output=True, text=True, check=False)
  if r.returncode:
    pytest.skip(f"$PEER_PYTHON={py} can't import torch: {r.stderr.strip().splitlines()[-1:]}")
  return py


def test_bench_runs_torch_eager_and_compiled_and_names_the_fastest(peer_python, tfds_dir,
                                                                   mnist_originals):
  del tfds_dir, mnist_originals
  py = peer_python
  if not shutil.which(os.environ.get("CXX", "g++")):
    pytest.skip("torch.compile on CPU needs a C++ compiler (g++ or $CXX)")
  r = run_module(["scripts/bench.py", "--config=configs/cnn_seed.py:test", "--steps=3",
                  "--peers=torch", f"--peer_python={py}", "--peer_epochs=1", "--repeats=1",
                  "--json"], timeout=900)
  assert r.returncode == 0, r.stderr[-3000:]
  out = json.loads(r.stdout[r.stdout.index("{"):])
  ours, *peers = out["rows"]
  by_variant = {p["peer_variant"]: p for p in peers}
  assert set(by_variant) == {"eager", "compiled"}, peers
  for variant, p in by_variant.items():
    assert "error" not in p, p
    assert p["framework"].startswith("torch ") and p["examples_per_sec"] > 0, p
    assert p["runs"] == 1 and p["compile_s"] >= 0 and p["cpu_model"] == ours["cpu_model"]
    assert np.isfinite(p["loss"]), p
  assert "compiled (inductor" in by_variant["compiled"]["framework"]
  assert "eager" in by_variant["eager"]["framework"]
  assert ours["fastest_peer"] in {p["framework"] for p in peers}  # torch's names have no [variant]
  assert ours["ratio_to_fastest_peer"] > 0
  assert re.fullmatch(r"fastest peer: torch .+ ; ours / fastest = \d+\.\d\dx \(median of 1\)",
                      out["summary"]), out["summary"]
