"""What runs and tools say and write: help, unknown flags, progress lines, sample grids, W&B."""

import numpy as np

from common.run import entry
from common.run import reporting
from conftest import run_module
from gan import sample


def test_help_lists_own_flags_and_config_keys_and_exits_0():
  r = run_module(["-m", "gan.main", "--config=configs/acgan.py:cpu", "--help"])
  assert r.returncode == 0, r.stderr[-2000:]
  assert "--workdir:" in r.stdout and "--fresh:" in r.stdout
  line = next(l for l in r.stdout.splitlines() if l.startswith("loss.d "))
  assert "one of 'minimax', 'wasserstein'" in line
  tool = run_module(["-m", "gan.sample", "--help"])
  assert tool.returncode == 0 and "--png:" in tool.stdout and "--out:" in tool.stdout


def test_unknown_flag_or_key_is_one_line_naming_the_nearest():
  r = run_module(["-m", "cnn.main", "--config=configs/cnn_seed.py:test", "--epochs=3"])
  assert r.returncode != 0 and r.stderr.strip().splitlines() == [
      "Error: unknown flag --epochs; did you mean --config.num_epochs? (--help lists the flags "
      "and config options)."]
  r = run_module(["-m", "cnn.main", "--config=configs/cnn_seed.py:test", "--config.num_epoch=3"])
  assert r.returncode != 0 and len(r.stderr.strip().splitlines()) == 1
  assert "did you mean --config.num_epochs?" in r.stderr


def test_nearest():
  names = ["workdir", "config.num_epochs", "config.model.arch"]
  assert entry.nearest("epochs", names) == "config.num_epochs"
  assert entry.nearest("config.model.archh", names) == "config.model.arch"
  assert entry.nearest("zzz", names) is None


def test_log_progress_prints_a_line_only_after_its_interval(capsys, monkeypatch):
  monkeypatch.setattr("sys.stdout.isatty", lambda: False, raising=False)
  progress = reporting.Progress("auto", log_every_s=30)
  assert progress.enabled and not progress.bar
  progress.update(1, 5, 10, 100, 12.0)
  progress.update(1, 5, 40, 100, 31.0)
  progress.update(1, 5, 50, 100, 40.0)
  progress.update(1, 5, 90, 100, 62.0)
  assert capsys.readouterr().out.splitlines() == [
      "Epoch 1/5 - 40/100 - 31s - ETA 46s", "Epoch 1/5 - 90/100 - 62s - ETA 7s"]
  off = reporting.Progress("off")
  assert not off.enabled and not off.bar


def test_class_rows_put_one_class_per_row():
  labels = np.array([0, 1, 2, 0, 1, 2, 0])            # 7 samples, 3 classes: 3, 2, 2
  images = (np.arange(7)[:, None, None, None] * np.ones((7, 2, 2, 1))).astype(np.uint8)
  placed, names = sample.class_rows(images, labels, ["a", "b", "c"])
  assert names == ["a", "b", "c"] and placed.shape == (9, 2, 2, 1)
  rows = placed[:, 0, 0, 0].reshape(3, 3)
  np.testing.assert_array_equal(rows, [[0, 3, 6], [1, 4, 0], [2, 5, 0]])


def test_wandb_offline_logs_scalars_images_and_config_under_one_id(tmp_path, monkeypatch):
  import ml_collections  # pylint: disable=g-import-not-at-top
  monkeypatch.setenv("WANDB_MODE", "offline")
  monkeypatch.setenv("WANDB_SILENT", "true")
  config = ml_collections.ConfigDict({"name": "t", "wandb_project": "proj", "seed": 3})
  for step in (10, 20):  # a resumed run logs into the same W&B run
    writer = reporting.Writer(str(tmp_path), config)
    writer.write_images("samples", np.zeros((4, 8, 8, 1), np.uint8), step)
    writer.write_epoch({"epoch": step // 10, "step": step, "d_loss": 0.5})
    writer.close()
  runs = sorted((tmp_path / "wandb").glob("offline-run-*"))
  run_id = (tmp_path / "wandb_id.txt").read_text()
  assert len(runs) == 2 and all(f"-{run_id}" in r.name for r in runs)  # "-1" if in one second
  log = (runs[0] / f"run-{run_id}.wandb").read_bytes()
  assert b"d_loss" in log and b"wandb_project" in log
  assert len(list((runs[0] / "files" / "media" / "images").glob("samples_*.png"))) == 1
  config.wandb_project = ""
  reporting.Writer(str(tmp_path / "off"), config).close()
  assert not (tmp_path / "off" / "wandb").exists()
