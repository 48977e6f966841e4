"""scripts/sweep.py and common/sweeps.py: names, shipped sweeps, commands, summaries, a real sweep."""

import csv
import importlib
import importlib.util
import json
import math
import os
import sys

import pytest

from conftest import REPO, load_config, run_module

from common import sweeps


def _load_script(name: str):
  spec = importlib.util.spec_from_file_location(f"scripts_{name}", REPO / "scripts" / f"{name}.py")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


sweep = _load_script("sweep")


def test_product_zip_and_names():
  grid = sweeps.product(**{"loss.gp_weight": [1.0, 10.0], "d_steps": [1, 5]})
  assert grid == [{"loss.gp_weight": 1.0, "d_steps": 1}, {"loss.gp_weight": 1.0, "d_steps": 5},
                  {"loss.gp_weight": 10.0, "d_steps": 1}, {"loss.gp_weight": 10.0, "d_steps": 5}]
  assert sweeps.zip_(a=[1, 2], b=["x", "y"]) == [{"a": 1, "b": "x"}, {"a": 2, "b": "y"}]
  with pytest.raises(ValueError):
    sweeps.zip_(a=[1, 2], b=[1])
  assert sweeps.member_name({"loss.gp_weight": 10.0, "d_steps": 5}) == "loss.gp_weight=10,d_steps=5"
  assert sweeps.member_name({"optimizer.learning_rate": 1e-4}) == "optimizer.learning_rate=0.0001"
  assert sweeps.member_name({"model.widths": (32, 64), "name": "a b/c"}) == (
      "model.widths=32-64,name=a_b_c")
  assert sweeps.member_name({sweeps.LABEL: "wgan_gp", "loss.d": "x", "seed": 3}) == "wgan_gp,seed=3"
  assert sweeps.member_name({}) == "base"
  long_a = sweeps.member_name({f"key{i}": i for i in range(40)})
  long_b = sweeps.member_name({f"key{i}": i + (i == 39) for i in range(40)})
  assert len(long_a) == 100 and long_a != long_b
  assert sweeps.format_value(1e-4) == "0.0001" and sweeps.format_value((1, 2)) == "(1, 2)"
  with pytest.raises(ValueError, match="same name"):
    sweeps.check_names([{"a": "x/y"}, {"a": "x_y"}])


@pytest.mark.parametrize("name", ["acgan", "wgan_gp", "gan"])
def test_unknown_sweep_lists_known_names(name):
  module = importlib.import_module(f"configs.{name}")
  with pytest.raises(ValueError, match="known sweeps: .*") as e:
    module.get_sweep("nope")
  assert "nope" in str(e.value)


@pytest.mark.parametrize("name,sweep_name,size", [
    ("acgan", "ablation", 8), ("acgan", "tiny", 3), ("wgan_gp", "ablation", 6),
    ("gan", "losses", 4)])
def test_shipped_sweeps_pass_gan_check(name, sweep_name, size):
  from gan import train  # pylint: disable=g-import-not-at-top
  members = importlib.import_module(f"configs.{name}").get_sweep(sweep_name)
  assert len(members) == size
  sweeps.check_names(members)
  for preset in ("", "cpu", "test"):
    base = load_config(name, preset)
    for member in members:
      config = sweep.apply_overrides(base, member)
      train.check(config)  # raises ConfigError on an invalid combination
      for key, value in sweeps.config_overrides(member).items():
        target = config
        for part in key.split("."):
          target = target[part]
        assert target == value, (key, target, value)


def test_gan_losses_sweep_covers_the_four_losses():
  members = {m[sweeps.LABEL]: m for m in importlib.import_module("configs.gan").get_sweep("losses")}
  assert set(members) == {"minimax", "non_saturating", "wgan", "wgan_gp"}
  assert members["minimax"]["loss.g"] == "minimax"
  assert members["non_saturating"]["loss.g"] == "non_saturating"
  assert members["wgan"]["loss.clip"] > 0 and members["wgan"]["g_optimizer.name"] == "rmsprop"
  assert members["wgan_gp"]["loss.gp_weight"] > 0 and members["wgan_gp"]["model.d_norm"] != "batch"
  assert len({frozenset(sweeps.config_overrides(m)) for m in members.values()}) == 1  # same keys


def test_dry_run_commands(tmp_path, capsys):
  rc = sweep.main(["--config=configs/acgan.py:test", "--sweep=tiny", "--seeds=2", "--dry-run",
                   f"--workdir={tmp_path}", "--overrides", "num_epochs=1"])
  out = capsys.readouterr().out
  assert rc == 0
  lines = [l for l in out.splitlines() if " -m gan.main " in l]
  assert len(lines) == 6, out
  assert "--config.loss.label_smoothing=0.1 --config.seed=1" in out
  assert all("--config.num_epochs=1" in l for l in lines)
  assert f"--workdir={tmp_path}/loss.label_smoothing=0.2,seed=0" in out
  assert not os.listdir(tmp_path)  # a dry run writes nothing

  rc = sweep.main(["--config=configs/cnn_seed.py:test", "--grid", "batch_size=64,128", "--dry-run",
                   f"--workdir={tmp_path}"])
  out = capsys.readouterr().out
  assert rc == 0 and out.count(" -m cnn.main ") == 2 and "--config.batch_size=64" in out

  rc = sweep.main(["--config=configs/wgan_gp.py:cpu", "--sweep=ablation", "--dry-run",
                   "--launcher=tpu", "--tpu-name=gan", "--tpu-zone=us-west4-a",
                   "--workdir=gs://bucket/sweeps/wgan_gp"])
  out = capsys.readouterr().out
  lines = [l for l in out.splitlines() if "scripts/tpu.py run" in l]
  assert rc == 0 and len(lines) == 6, out
  assert all("--name=gan --zone=us-west4-a --foreground" in l for l in lines)
  assert (" -- python -m gan.main --config=configs/wgan_gp.py:cpu "
          "--workdir=gs://bucket/sweeps/wgan_gp/loss.gp_weight=100,d_steps=5,seed=0") in out


def test_check_rejects_invalid_members(tmp_path, capsys):
  rc = sweep.main(["--config=configs/acgan.py:test", "--grid", "loss.d=wasserstein", "--check",
                   "--dry-run", f"--workdir={tmp_path}"])
  assert rc == 2 and "don't match" in capsys.readouterr().err


def _fake_results(path, accuracy, loss):
  os.makedirs(path, exist_ok=True)
  with open(os.path.join(path, "results.json"), "w") as f:
    json.dump({"preempted": False, "test": {"accuracy": accuracy, "loss": loss},
               "final_epoch": {"loss": loss, "epoch": 2}, "wall_time_s": 1.5}, f)


def test_summary_groups_seeds_and_sorts(tmp_path):
  jobs = []
  for lr, accs in ((0.1, (0.90, 0.92)), (1.0, (0.95, 0.97)), (3.0, (None, None))):
    member = {"optimizer.learning_rate": lr}
    for seed, acc in enumerate(accs):
      name = sweeps.member_name({**member, "seed": seed})
      job = sweep.Job(member, seed, sweeps.member_name(member), name, str(tmp_path / name),
                      str(tmp_path / name / "log.txt"))
      if acc is not None:
        _fake_results(job.workdir, acc, 1 - acc)
      jobs.append(job)
  summary = sweep.summarize(jobs, str(tmp_path), False, None, "auto", "test")
  assert summary["metric"] == "test.accuracy"
  with open(tmp_path / "summary.csv") as f:
    rows = list(csv.DictReader(f))
  assert [(r["optimizer.learning_rate"], r["seed"]) for r in rows] == [
      ("0.1", "0"), ("0.1", "1"), ("1.0", "0"), ("1.0", "1")]
  assert rows[0]["test.accuracy"] == "0.9" and rows[0]["final_epoch.loss"]
  with open(tmp_path / "summary_grouped.csv") as f:
    groups = list(csv.DictReader(f))
  assert [g["member"] for g in groups] == ["optimizer.learning_rate=1", "optimizer.learning_rate=0.1"]
  assert math.isclose(float(groups[0]["test.accuracy.mean"]), 0.96)
  assert math.isclose(float(groups[0]["test.accuracy.std"]), 0.0141421356, rel_tol=1e-6)  # ddof=1
  md = (tmp_path / "summary.md").read_text()
  assert "| optimizer.learning_rate=1 | 1 | 2 | 0.96 ± 0.01414 |" in md
  assert "optimizer.learning_rate=3,seed=0" in md.split("## Not finished")[1]
  assert (tmp_path / "summary.png").stat().st_size > 1000
  # A loss sorts lowest first.
  summary = sweep.summarize(jobs, str(tmp_path), False, "test.loss", "auto", "test")
  assert summary["groups"][0]["member"] == "optimizer.learning_rate=1"


def test_sweep_runs_skips_and_reports_failures(tfds_dir, tmp_path):
  """Three CNN members, one with an invalid learning rate: it fails alone, with its log tail."""
  members = [{"optimizer.learning_rate": 1.0}, {"optimizer.learning_rate": 0.3},
             {"optimizer.learning_rate": -1.0}]
  spec = tmp_path / "tiny.json"
  spec.write_text(json.dumps(members))
  sweep_dir = tmp_path / "sweep"
  args = ["scripts/sweep.py", "--config=configs/cnn_seed.py:test", f"--sweep={spec}",
          f"--workdir={sweep_dir}", "--parallel=3", "--overrides", "num_epochs=1"]
  r = run_module(args)
  assert r.returncode == 1, r.stdout + r.stderr
  bad, good = "optimizer.learning_rate=-1,seed=0", ["optimizer.learning_rate=1,seed=0",
                                                     "optimizer.learning_rate=0.3,seed=0"]
  report = r.stdout.split("runs FAILED:")[1]
  assert f"--- {bad} (exit code 1)" in report
  assert "config.optimizer.learning_rate=-1.0 is not allowed" in report  # the log's tail
  for name in good:
    assert (sweep_dir / name / "results.json").exists()
    assert f"done {name}" in r.stdout
  assert not (sweep_dir / bad / "results.json").exists()
  assert (sweep_dir / bad / "log.txt").exists()
  with open(sweep_dir / "summary.csv") as f:
    rows = list(csv.DictReader(f))
  assert sorted(r["member"] for r in rows) == ["optimizer.learning_rate=0.3",
                                               "optimizer.learning_rate=1"]
  assert all(float(r["test.accuracy"]) > 0 and r["final_epoch.loss"] for r in rows)
  md = (sweep_dir / "summary.md").read_text()
  assert "2 finished runs of 3" in md and f"- {bad} (failed)" in md

  # Rerunning skips the finished members and retries only the failed one.
  r2 = run_module(args)
  assert r2.returncode == 1
  for name in good:
    assert f"skip {name} (finished)" in r2.stdout
    assert (sweep_dir / name / "log.txt").read_text().count("\n=== ") == 1
  assert (sweep_dir / bad / "log.txt").read_text().count("\n=== ") == 2
  assert f"--- {bad} (exit code 1)" in r2.stdout
