"""End-to-end CNN runs on real MNIST: files written, exact resume, SIGTERM, guards."""

import json
import os
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from common.run import runs
from cnn import train
from conftest import REPO, latest_params, load_config, preempted_at, run_module


def _leaves(tree):
  return [np.asarray(x) for x in jax.tree.leaves(tree)]


def test_main_writes_logs_results_and_figure(tfds_dir, tmp_path):
  workdir = tmp_path / "run"
  r = run_module(["-m", "cnn.main", "--config=configs/cnn_seed.py:test", f"--workdir={workdir}"])
  assert r.returncode == 0, r.stderr[-3000:]
  assert "Total params: 27,320" in r.stdout
  lines = [l for l in r.stdout.splitlines() if l.startswith("Epoch ")]
  assert len(lines) == 2 and lines[1].startswith("Epoch 2/2 - 16/16 - ")
  for part in ("ms/step - loss: ", " - accuracy: ", " - val_loss: ", " - val_accuracy: "):
    assert part in lines[1]
  assert "Test loss: " in r.stdout and "Test accuracy: " in r.stdout
  rows = [json.loads(l) for l in (workdir / "metrics.jsonl").read_text().splitlines()]
  assert [row["epoch"] for row in rows] == [1, 2] and rows[1]["step"] == 32
  for key in ("loss", "accuracy", "val_loss", "val_accuracy", "epoch_time_s", "examples_per_sec"):
    assert np.isfinite(rows[1][key]), key
  results = json.loads((workdir / "results.json").read_text())
  assert results["num_params"] == 27_320 and 0.1 < results["test"]["accuracy"] <= 1.0
  assert json.loads((workdir / "config.json").read_text())["name"] == "cnn_seed_test"
  assert (workdir / "training_curves.png").stat().st_size > 10_000
  assert any(f.startswith("events.out.tfevents") for f in os.listdir(workdir / "tensorboard"))
  assert "Compiling the training step..." in r.stdout and "Compiled in " in r.stdout
  again = run_module(["-m", "cnn.main", "--config=configs/cnn_seed.py:test", f"--workdir={workdir}"])
  assert again.returncode == 0, again.stderr[-3000:]
  assert f"Already finished (2 epochs, step 32) in {workdir}" in again.stdout
  assert "Raise --config.num_epochs to train on" in again.stdout and "Compiling" not in again.stdout


def test_resume_with_other_chunks_and_placement_equals_uninterrupted_run(tfds_dir, tmp_path):
  """Stopped at step 10 of 16 (chunks of 5; inside the straight run's one chunk per epoch),
  resumed in chunks of 3 streamed from the host, then extended to 3 epochs on device: every
  leg changes what a resume may change, and the end is bitwise the straight run's."""
  straight, r1 = train.train_and_evaluate(load_config("cnn_seed", num_epochs=3),
                                          str(tmp_path / "a"))
  with preempted_at(10):
    _, r = train.train_and_evaluate(load_config("cnn_seed", num_epochs=1, steps_per_call=5),
                                    str(tmp_path / "b"))
  assert r["preempted"] and r["step"] == 10
  first, _ = train.train_and_evaluate(
      load_config("cnn_seed", num_epochs=1, steps_per_call=3, data_placement="host"),
      str(tmp_path / "b"))
  assert int(first.step) == 16
  resumed, r2 = train.train_and_evaluate(load_config("cnn_seed", num_epochs=3), str(tmp_path / "b"))
  for a, b in zip(_leaves(straight), _leaves(resumed)):
    np.testing.assert_array_equal(a, b)
  assert r1["test"] == r2["test"]
  history = [json.loads(l) for l in (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()]
  assert [h["epoch"] for h in history] == [1, 2, 3]


def test_sigterm_saves_and_rerun_finishes_like_uninterrupted(tfds_dir, tmp_path):
  args = ["-m", "cnn.main", "--config=configs/cnn_seed.py:test", "--config.num_epochs=40",
          "--config.steps_per_call=1"]
  workdir = tmp_path / "pre"
  proc = subprocess.Popen([sys.executable, *args, f"--workdir={workdir}"], cwd=REPO,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
  metrics = workdir / "metrics.jsonl"
  deadline = time.time() + 300
  while not (metrics.exists() and metrics.read_text().strip()) and time.time() < deadline:
    time.sleep(0.2)
  proc.send_signal(signal.SIGTERM)
  out, err = proc.communicate(timeout=300)
  assert proc.returncode == 0, err[-3000:]
  assert "Preempted: saved step" in out
  _, step = latest_params(str(workdir))
  assert 16 <= step < 640
  assert not (workdir / "results.json").exists()

  r = run_module(args + [f"--workdir={workdir}"])
  assert r.returncode == 0, r.stderr[-3000:]
  assert f"Resumed from step {step} (epoch {step // 16}/40 done" in r.stdout
  r2 = run_module(args + [f"--workdir={tmp_path / 'straight'}"])
  assert r2.returncode == 0, r2.stderr[-3000:]
  resumed, s1 = latest_params(str(workdir))
  straight, s2 = latest_params(str(tmp_path / "straight"))
  assert s1 == s2 == 640
  for a, b in zip(_leaves(resumed), _leaves(straight)):
    np.testing.assert_array_equal(a, b)
  res = [json.loads((d / "results.json").read_text())["test"] for d in (workdir, tmp_path / "straight")]
  assert res[0] == res[1]


def test_workdir_of_another_config_is_refused_then_archived(tfds_dir, tmp_path):
  train.train_and_evaluate(load_config("cnn_seed", num_epochs=1), str(tmp_path))
  before = latest_params(str(tmp_path))
  with pytest.raises(runs.RunError, match=r"batch_size: 128 -> 64.*--fresh"):
    train.train_and_evaluate(load_config("cnn_seed", num_epochs=1, batch_size=64), str(tmp_path))
  after = latest_params(str(tmp_path))  # refused without touching the checkpoints
  for a, b in zip(_leaves(before[0]), _leaves(after[0])):
    np.testing.assert_array_equal(a, b)
  state, _ = train.train_and_evaluate(load_config("cnn_seed", num_epochs=1, batch_size=64),
                                      str(tmp_path), fresh=True)
  assert int(state.step) == 32
  archived = list((tmp_path / "archive").iterdir())
  assert len(archived) == 1 and (archived[0] / "checkpoints").is_dir()
