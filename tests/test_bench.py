"""scripts/bench.py: throughput rows, XLA's FLOP count and the roofline fractions."""

import json

from conftest import run_module


def test_bench_counts_flops_and_reports_the_roofline(tfds_dir):
  r = run_module(["scripts/bench.py", "--config=configs/cnn_seed.py:test", "--steps=2",
                  "--repeats=1", "--roofline", "--json"])
  assert r.returncode == 0, r.stderr[-3000:]
  out = json.loads(r.stdout[r.stdout.index("{"):])
  row, meta = out["rows"][0], out["meta"]
  steps_per_epoch = row["epoch_s"] * 1e3 / row["ms_per_step"]
  # The course CNN's step: conv 3x3x1x16 on 26x26, dense 2704x10 and 10x10, forward and backward
  # (about 3x forward): 2 * (26*26*9*16 + 2704*10 + 10*10) * 3 = 746,976 FLOPs per image.
  per_image = row["flops_per_epoch"] / steps_per_epoch / row["batch"]
  assert 0.7e6 < per_image < 1.0e6, per_image
  assert meta["matmul_flops_per_s"] > 1e9 and meta["bytes_per_s"] > 1e8
  assert 0.0 < row["flops_fraction"] < 1.0
