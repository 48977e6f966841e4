"""data_placement='disk': a generated TFDS dataset in array_record, read by index with grain.

The same batches as on device, exact resume mid-epoch, host memory that does not grow with
the dataset, and a dataset prepared in TFDS's default tfrecord converted once to array_record.
No download: the dataset is generated here (tests/generated_data.py).
"""

import json
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

import generated_data
from cnn import train
from common.data import datasets
from common.run import checkpoint
from conftest import load_config, run_module


@pytest.fixture(scope="module")
def generated(tmp_path_factory) -> str:
  """A data_dir holding generated_squares: 1,024 training images of 16x16x3, 4 classes."""
  d = str(tmp_path_factory.mktemp("generated"))
  generated_data.prepare(d, num_train=1024, size=16)
  return d


def _config(data_dir, placement, **overrides):
  return load_config("cnn_seed", "test", dataset=generated_data.NAME, data_dir=data_dir,
                     data_placement=placement, validation_split=0.125, train_examples=0,
                     batch_size=32, steps_per_call=5, num_epochs=2, **overrides)


def _params(state):
  return [np.asarray(a) for a in jax.tree.leaves(state.params)]


def test_disk_run_equals_device_run_and_resumes_exactly_mid_epoch(generated, tmp_path,
                                                                  monkeypatch):
  on_device, r_device = train.train_and_evaluate(_config(generated, "device"),
                                                 str(tmp_path / "device"))
  assert r_device["step"] == 2 * (896 // 32)  # 1024 less the validation eighth, batches of 32
  monkeypatch.setattr(checkpoint.Preemption, "reached", lambda self, step: step == 38)
  _, r = train.train_and_evaluate(_config(generated, "disk"), str(tmp_path / "disk"))
  assert r["preempted"] and r["step"] == 38  # a chunk boundary mid-way through epoch 2 (28 steps each)
  monkeypatch.undo()
  from_disk, r_disk = train.train_and_evaluate(_config(generated, "disk"), str(tmp_path / "disk"))
  assert not r_disk["preempted"] and r_disk["step"] == r_device["step"]
  for a, b in zip(_params(on_device), _params(from_disk)):
    np.testing.assert_array_equal(a, b)
  assert r_disk["test"] == r_device["test"] and r_device["test"]["accuracy"] > 0.5


def test_disk_run_on_tfrecord_prepared_mnist_converts_once_and_equals_device(tfds_dir, tmp_path,
                                                                            capsys):
  small = dict(num_epochs=1, train_examples=512, eval_batch_size=400)
  on_device, r_device = train.train_and_evaluate(
      load_config("cnn_seed", data_placement="device", **small), str(tmp_path / "device"))
  capsys.readouterr()
  config = load_config("cnn_seed", data_placement="disk", **small)
  from_disk, r_disk = train.train_and_evaluate(config, str(tmp_path / "disk"))
  assert "Converting mnist from tfrecord to array_record (once)" in capsys.readouterr().out
  for a, b in zip(_params(on_device), _params(from_disk)):
    np.testing.assert_array_equal(a, b)
  assert r_disk["test"] == r_device["test"]
  datasets.load_disk(config)  # read again: from the copy, not converted again
  assert "Converting" not in capsys.readouterr().out
  assert (Path(tfds_dir) / "array_record" / "mnist").is_dir()


def _peak(workdir, data_dir, placement, train_examples=0) -> int:
  """Peak Python and numpy memory of one CNN epoch in a fresh process (tests/memory_run.py)."""
  r = run_module(["tests/memory_run.py", str(workdir), f"dataset={generated_data.NAME}",
                  f"data_dir={data_dir}", f"data_placement={placement}", "batch_size=32",
                  "steps_per_call=4", "num_epochs=1", "validation_split=0.0",
                  f"train_examples={train_examples}", "read_threads=2", "read_prefetch_steps=4",
                  "progress_bar=off"])
  assert r.returncode == 0, r.stderr[-3000:]
  return json.loads(r.stdout.strip().splitlines()[-1])["peak"]


def test_disk_placement_trains_on_a_dataset_four_times_its_memory_bound(tmp_path):
  """One epoch over 8,000 images of 32x32x3 (23 MiB decoded) from disk peaks less than a quarter
  of that above the same run on its first 512 images; the same epoch with the split in memory
  peaks at least three quarters of it higher (so the measurement can fail)."""
  data_dir = str(tmp_path / "data")
  generated_data.prepare(data_dir, num_train=8000, size=32)
  decoded = 8000 * 32 * 32 * 3
  small = _peak(tmp_path / "small", data_dir, "disk", train_examples=512)
  from_disk = _peak(tmp_path / "disk", data_dir, "disk")
  in_memory = _peak(tmp_path / "device", data_dir, "device")
  print(f"peak traced memory (MiB): small {small / 2**20:.1f}, disk {from_disk / 2**20:.1f}, "
        f"device {in_memory / 2**20:.1f}; decoded split {decoded / 2**20:.1f}", file=sys.stderr)
  assert in_memory - small > 0.75 * decoded
  assert from_disk - small < decoded / 4


def test_bench_times_disk_placement_and_reader(generated):
  r = run_module(["scripts/bench.py", "--config=configs/cnn_seed.py:test",
                  f"--config.dataset={generated_data.NAME}", f"--config.data_dir={generated}",
                  "--config.validation_split=0", "--config.train_examples=0",
                  "--placements=device,disk", "--reader_threads=2", "--reader_workers=1", "--repeats=1",
                  "--json"])
  assert r.returncode == 0, r.stderr[-3000:]
  rows = json.loads(r.stdout[r.stdout.index("{"):])["rows"]
  assert [row["framework"].split(", ")[-1] for row in rows] == [
      "data on device", "data on disk", "2 grain threads (no training)",
      "2 grain threads in each of 1 worker processes (no training)"]
  assert all(row["examples_per_sec"] > 0 and row["steps"] == 1024 // 128 for row in rows)
