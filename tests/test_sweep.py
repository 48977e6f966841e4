"""scripts/sweep.py, scripts/sweeping/ and common/sweeps.py: names, shipped sweeps, commands, summaries, a real sweep."""

import csv
import importlib
import importlib.util
import json
import math
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import REPO, load_config, run_module

from common import sweeps
from common.run import workdir_lock
from scripts.sweeping import members as sweep_members
from scripts.sweeping import runner as sweep_runner
from scripts.sweeping import summary as sweep_summary


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
  from gan import options  # pylint: disable=g-import-not-at-top
  members = importlib.import_module(f"configs.{name}").get_sweep(sweep_name)
  assert len(members) == size
  sweeps.check_names(members)
  for preset in ("", "cpu", "test"):
    base = load_config(name, preset)
    for member in members:
      config = sweep_members.apply_overrides(base, member)
      options.validate(config)  # raises ConfigError on an invalid combination
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
  assert len({frozenset(sweeps.config_overrides(m)) for m in members.values()}) == 1  # same options


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
  """Members are always validated before any starts, on a dry run too; nothing is written."""
  rc = sweep.main(["--config=configs/acgan.py:test", "--grid", "loss.d=wasserstein",
                   f"--workdir={tmp_path}"])
  assert rc == 2 and "don't match" in capsys.readouterr().err
  rc = sweep.main(["--config=configs/acgan.py:test", "--grid", "loss.dd=x", "--dry-run",
                   f"--workdir={tmp_path}"])
  assert rc == 2 and "unknown config option 'loss.dd'" in capsys.readouterr().err
  assert not os.listdir(tmp_path)


def _fake_results(path, accuracy, loss, config: dict | None = None):
  """A run's results.json and, when given, the config.json it recorded."""
  os.makedirs(path, exist_ok=True)
  if config is not None:
    with open(os.path.join(path, "config.json"), "w") as f:
      json.dump(config, f)
  with open(os.path.join(path, "results.json"), "w") as f:
    json.dump({"preempted": False, "test": {"accuracy": accuracy, "loss": loss},
               "final_epoch": {"loss": loss, "epoch": 2}, "wall_time_s": 1.5}, f)


def _job(base, member: dict, seed: int, folder) -> "sweep_members.Job":
  name = sweeps.member_name({**member, "seed": seed})
  job = sweep_members.Job(member, seed, sweeps.member_name(member), name, str(folder / name),
                  str(folder / name / "log.txt"))
  job.config = sweep_members.member_config(base, job)
  return job


def test_summary_groups_seeds_and_sorts(tmp_path):
  base, jobs = load_config("cnn_seed", "test"), []
  for lr, accs in ((0.1, (0.90, 0.92)), (1.0, (0.95, 0.97)), (3.0, (None, None)), (5.0, (0.99,))):
    for seed, acc in enumerate(accs):
      job = _job(base, {"optimizer.learning_rate": lr}, seed, tmp_path)
      if acc is not None:
        _fake_results(job.workdir, acc, 1 - acc, job.config)
      jobs.append(job)
  # Results of another config (a different seed recorded) never count.
  stale = _job(base, {"optimizer.learning_rate": 3.0}, 0, tmp_path)
  _fake_results(stale.workdir, 0.999, 0.001, dict(stale.config, seed=7))
  summary = sweep_summary.summarize(jobs, str(tmp_path), False, None, "auto", "test")
  assert summary["metric"] == "test.accuracy"
  with open(tmp_path / "summary.csv") as f:
    rows = list(csv.DictReader(f))
  assert [(r["optimizer.learning_rate"], r["seed"]) for r in rows] == [
      ("0.1", "0"), ("0.1", "1"), ("1.0", "0"), ("1.0", "1"), ("5.0", "0")]
  assert rows[0]["test.accuracy"] == "0.9" and rows[0]["final_epoch.loss"]
  with open(tmp_path / "summary_grouped.csv") as f:
    groups = list(csv.DictReader(f))
  assert [g["member"] for g in groups] == ["optimizer.learning_rate=5", "optimizer.learning_rate=1",
                                           "optimizer.learning_rate=0.1"]
  assert math.isclose(float(groups[1]["test.accuracy.mean"]), 0.96)
  assert math.isclose(float(groups[1]["test.accuracy.std"]), 0.0141421356, rel_tol=1e-6)  # ddof=1
  assert groups[0]["n"] == "1" and groups[0]["test.accuracy.std"] == "nan"  # no std of one value
  md = (tmp_path / "summary.md").read_text()
  assert "| optimizer.learning_rate=1 | 1 | 2 | 0.96 ± 0.01414 |" in md
  assert "| optimizer.learning_rate=5 | 5 | 1 | 0.99 |" in md
  not_finished = md.split("## Not finished")[1]
  assert "- optimizer.learning_rate=3,seed=0 (its results.json is another config's)" in not_finished
  assert "optimizer.learning_rate=3,seed=1 (no results.json)" in not_finished
  assert (tmp_path / "summary.png").stat().st_size > 1000
  # A loss sorts lowest first.
  summary = sweep_summary.summarize(jobs, str(tmp_path), False, "test.loss", "auto", "test")
  assert summary["groups"][0]["member"] == "optimizer.learning_rate=5"


def test_gan_summary_ranks_by_quality_or_refuses(tmp_path):
  """GAN runs rank by the classifier FD (lower first), never by a loss; without it, unranked."""
  base = load_config("gan", "test")
  jobs = [_job(base, {"d_steps": d}, 0, tmp_path) for d in (1, 2)]
  for job, fid in zip(jobs, (3.0, 2.0)):
    _fake_results(job.workdir, 0, 0, job.config)
    results = json.loads((Path(job.workdir) / "results.json").read_text())
    results["final_epoch"]["g_loss"] = fid
    (Path(job.workdir) / "results.json").write_text(json.dumps(results))
  summary = sweep_summary.summarize(jobs, str(tmp_path), True, None, "auto", "test")
  assert summary["metric"] is None and "not ranked" in (tmp_path / "summary.md").read_text()
  for job, fid in zip(jobs, (3.0, 2.0)):
    results = json.loads((Path(job.workdir) / "results.json").read_text())
    (Path(job.workdir) / "results.json").write_text(json.dumps(dict(results, eval={"fid": fid})))
  summary = sweep_summary.summarize(jobs, str(tmp_path), True, None, "auto", "test")
  assert summary["metric"] == "eval.fid"
  assert [g["member"] for g in summary["groups"]] == ["d_steps=2", "d_steps=1"]


def test_sweep_runs_skips_and_reports_failures(tfds_dir, tmp_path):
  """Three CNN members, one whose learning rate makes the loss NaN: it fails alone, with its log
  tail."""
  members = [{"optimizer.learning_rate": 1.0}, {"optimizer.learning_rate": 0.3},
             {"optimizer.learning_rate": 1e30}]
  spec = tmp_path / "tiny.json"
  spec.write_text(json.dumps(members))
  sweep_dir = tmp_path / "sweep"
  args = ["scripts/sweep.py", "--config=configs/cnn_seed.py:test", f"--sweep={spec}",
          f"--workdir={sweep_dir}", "--parallel=3", "--overrides", "num_epochs=1"]
  r = run_module(args)
  assert r.returncode == 1, r.stdout + r.stderr
  bad, good = "optimizer.learning_rate=1e+30,seed=0", ["optimizer.learning_rate=1,seed=0",
                                                        "optimizer.learning_rate=0.3,seed=0"]
  report = r.stdout.split("runs FAILED:")[1]
  assert f"--- {bad} (exit code 1)" in report
  assert "Non-finite loss" in report  # the log's tail
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


def test_rerun_with_changed_overrides_never_reports_old_results(tfds_dir, tmp_path, capsys):
  """A finished member rerun with another override runs afresh (its old run archived, not
  deleted); the summary shows the new run only; sweep.json keeps the old record; a sweep of
  another config in the same folder is refused."""
  del tfds_dir
  sweep_dir, name = tmp_path / "sweep", "optimizer.learning_rate=1,seed=0"
  args = ["--config=configs/cnn_seed.py:test", "--grid", "optimizer.learning_rate=1.0",
          f"--workdir={sweep_dir}", "--config.num_epochs=1"]
  assert sweep.main(args) == 0
  assert sweep.main(args) == 0
  assert "(1 finished, 0 to run)" in capsys.readouterr().out
  assert sweep.main(args[:-1] + ["--overrides", "num_epochs=2"]) == 0
  out = capsys.readouterr().out
  assert "(0 finished, 1 to run, 1 of them afresh: their recorded config differs)" in out, out
  assert f"{name}: config changed (num_epochs: 1 -> 2)" in out
  (archived,) = (sweep_dir / name / "archive").iterdir()
  assert json.loads((archived / "results.json").read_text())["final_epoch"]["epoch"] == 1
  assert json.loads((sweep_dir / name / "results.json").read_text())["final_epoch"]["epoch"] == 2
  with open(sweep_dir / "summary.csv") as f:
    assert [r["final_epoch.epoch"] for r in csv.DictReader(f)] == ["2"]
  (kept,) = sweep_dir.glob("sweep.json.*")
  assert json.loads(kept.read_text())["overrides"] == ["num_epochs=1"]
  assert json.loads((sweep_dir / "sweep.json").read_text())["overrides"] == ["num_epochs=2"]
  with pytest.raises(SystemExit, match="holds a sweep of configs/cnn_seed.py:test"):
    sweep.main(["--config=configs/cnn.py:test", f"--workdir={sweep_dir}", "--dry-run"])


def test_apply_overrides_matches_config_flags():
  """Overrides behave as --config.key=value: int -> float, unknown options and wrong types raise."""
  base = load_config("cnn_seed", "test")
  config = sweep_members.apply_overrides(base, {"optimizer.learning_rate": 2, "batch_size": 64,
                                        sweeps.LABEL: "label is not a key"})
  assert isinstance(config.optimizer.learning_rate, float) and config.optimizer.learning_rate == 2.0
  assert config.batch_size == 64 and base.batch_size == 128  # a copy
  for key in ("optimizer.nope", "nope", "model.name.deeper"):
    with pytest.raises(KeyError, match="unknown config option"):
      sweep_members.apply_overrides(base, {key: 1})
  with pytest.raises(TypeError):
    sweep_members.apply_overrides(base, {"batch_size": "many"})
  with pytest.raises(TypeError):
    sweep_members.apply_overrides(base, {"batch_size": 2.5})


def test_slurm_dry_run_scripts(tmp_path, capsys):
  """--launcher=slurm --dry-run: an array over the unfinished runs, requeue on a clean stop, srun,
  the user's #SBATCH options over the defaults, a dependent --summarize job; nothing written."""
  done = _job(load_config("cnn_seed", "test", num_epochs=3), {"optimizer.learning_rate": 0.3}, 1,
              tmp_path)
  _fake_results(done.workdir, 0.9, 0.1, done.config)
  before = sorted(os.listdir(tmp_path))
  rc = sweep.main(["--config=configs/cnn_seed.py:test", "--grid", "optimizer.learning_rate=0.3,1.0",
                   "--seeds=2", "--launcher=slurm", "--dry-run", f"--workdir={tmp_path}",
                   "--slurm-arg=--time=04:00:00", "--slurm-arg=--signal=TERM@300",
                   "--slurm-arg=--partition=gpu", "--slurm-arg=--gpus-per-node=8",
                   "--slurm-setup=module load cuda", "--overrides", "num_epochs=3"])
  out = capsys.readouterr().out
  assert rc == 0 and "(1 finished, 3 to run)" in out, out
  assert sorted(os.listdir(tmp_path)) == before  # a dry run writes nothing
  files = dict(re.findall(r"# ----- (\S+)\n(.*?)(?=\n# ----- |\Z)", out, re.S))
  slurm_dir = f"{tmp_path}/slurm"
  table, array, summary = (files[f"{slurm_dir}/{n}"]
                           for n in ("members.tsv", "array.sbatch", "summary.sbatch"))
  rows = [line.split("\t") for line in table.splitlines()]
  assert [r[0] for r in rows] == ["optimizer.learning_rate=0.3,seed=0",
                                  "optimizer.learning_rate=1,seed=0",
                                  "optimizer.learning_rate=1,seed=1"]
  assert rows[1][1] == f"{tmp_path}/optimizer.learning_rate=1,seed=0"
  assert rows[1][3].endswith("--config.num_epochs=3 --config.optimizer.learning_rate=1.0 "
                             "--config.seed=0") and " -m cnn.main " in rows[1][3]
  sbatch = re.findall(r"^#SBATCH (\S+)$", array, re.M)
  assert "--array=0-2" in sbatch and "--requeue" in sbatch and "--time=04:00:00" in sbatch
  assert "--signal=TERM@300" in sbatch and "--signal=TERM@120" not in sbatch  # replaced
  assert "--gpus-per-node=8" in sbatch and "--nodes=1" in sbatch
  assert f"--output={slurm_dir}/%A_%a.out" in sbatch
  assert 'srun --kill-on-bad-exit=1 bash -c "exec $cmd"' in array
  assert 'scontrol requeue "$task"' in array
  assert 'task="${SLURM_ARRAY_JOB_ID}_${SLURM_ARRAY_TASK_ID}"' in array
  assert "module load cuda" in array and "module load cuda" in summary
  assert array.index("if finished; then") < array.index("srun ")  # skipped inside the task too
  assert re.findall(r"^#SBATCH (\S+)$", summary, re.M)[-1] == "--partition=gpu"
  assert "--gpus-per-node=8" not in summary
  assert ("--grid optimizer.learning_rate=0.3,1.0 --seeds=2 " in summary and
          "--overrides num_epochs=3 --summarize" in summary)
  for text in (array, summary):
    script = tmp_path.parent / "check.sh"
    script.write_text(text)
    r = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
  submit = out.split("# ----- submit\n")[1].splitlines()
  assert submit == [f"sbatch --parsable {slurm_dir}/array.sbatch",
                    f"sbatch --parsable '--dependency=afterany:<ARRAY_JOB_ID>' "
                    f"{slurm_dir}/summary.sbatch"]

  rc = sweep.main(["--config=configs/cnn_seed.py:test", "--launcher=slurm", "--dry-run",
                   f"--workdir={tmp_path}", "--parallel=2", "--seeds=3"])
  assert rc == 0 and "#SBATCH --array=0-2%2" in capsys.readouterr().out
  with pytest.raises(SystemExit, match="long form"):
    sweep.main(["--config=configs/cnn_seed.py:test", "--launcher=slurm", "--dry-run",
                f"--workdir={tmp_path}", "--slurm-arg=-t 10"])


def test_tpu_dry_run_spreads_members_over_slices(capsys):
  rc = sweep.main(["--config=configs/wgan_gp.py:cpu", "--sweep=ablation", "--dry-run",
                   "--launcher=tpu", "--tpu-name=a,b,c", "--tpu-zone=us-west4-a",
                   "--workdir=gs://bucket/sweeps/wgan_gp"])
  out = capsys.readouterr().out
  names = re.findall(r"scripts/tpu.py run --name=(\w+) ", out)
  assert rc == 0 and names == ["a", "b", "c", "a", "b", "c"], out


FAKE_GCLOUD = """#!{python}
# Stands in for `gcloud compute tpus tpu-vm ssh SLICE ... --command=...`: logs when each member ran
# on which slice, sleeps, and writes the member's config.json and results.json as a finished run
# would.
import ast, json, os, re, sys, time
sys.path.insert(0, {repo!r})
from ml_collections.config_flags import config_path
slice_name = sys.argv[sys.argv.index("ssh") + 1]
command = next(a for a in sys.argv if a.startswith("--command="))
workdir = re.search(r"--workdir=(\\S+)", command).group(1)
def event(kind):
  with open(os.environ["FAKE_GCLOUD_EVENTS"], "a") as f:
    f.write(json.dumps({{"slice": slice_name, "kind": kind, "t": time.time(),
                         "run": os.path.basename(workdir)}}) + "\\n")
event("start")
time.sleep(1.0)
os.makedirs(workdir, exist_ok=True)
module, preset = re.search(r"--config=configs/(\\w+).py:?(\\w*)", command).groups()
config = __import__(f"configs.{{module}}", fromlist=["x"]).get_config(preset)
for key, value in re.findall(r"--config\\.(\\S+?)=(\\S+)", command):
  config_path.set_value(key, config, ast.literal_eval(value))
with open(os.path.join(workdir, "config.json"), "w") as f:
  f.write(config.to_json())
with open(os.path.join(workdir, "results.json"), "w") as f:
  json.dump({{"test": {{"accuracy": 0.5}}}}, f)
event("end")
"""


def test_tpu_slices_run_one_member_each_at_a_time(tmp_path):
  """5 members on 2 slices (a fake gcloud): both slices busy at once, never 2 members on one."""
  bin_dir = tmp_path / "bin"
  bin_dir.mkdir()
  (bin_dir / "gcloud").write_text(FAKE_GCLOUD.format(python=sys.executable, repo=str(REPO)))
  (bin_dir / "gcloud").chmod(0o755)
  events_path = tmp_path / "events.jsonl"
  sweep_dir = tmp_path / "sweep"
  r = run_module(["scripts/sweep.py", "--config=configs/cnn_seed.py:test",
                  "--grid", "optimizer.learning_rate=0.1,0.2,0.3,0.4,0.5", "--launcher=tpu",
                  "--tpu-name=s1,s2", "--tpu-zone=z", f"--workdir={sweep_dir}"],
                 env_extra={"PATH": f"{bin_dir}:{os.environ['PATH']}",
                            "FAKE_GCLOUD_EVENTS": str(events_path)}, timeout=300)
  assert r.returncode == 0, r.stdout + r.stderr
  events = [json.loads(line) for line in events_path.read_text().splitlines()]
  assert len(events) == 10 and {e["slice"] for e in events} == {"s1", "s2"}
  assert len({e["run"] for e in events}) == 5
  busy, most = {}, 0
  for e in sorted(events, key=lambda e: (e["t"], e["kind"] == "start")):
    if e["kind"] == "start":
      assert e["slice"] not in busy, f"two members at once on {e['slice']}"
      busy[e["slice"]] = e["run"]
      most = max(most, len(busy))
    else:
      assert busy.pop(e["slice"]) == e["run"]
  assert most == 2  # both slices at once
  assert len(re.findall(r"^  start optimizer.learning_rate=0.\d,seed=0 on s[12]$", r.stdout, re.M)) == 5
  with open(sweep_dir / "summary.csv") as f:
    assert len(list(csv.DictReader(f))) == 5


def test_claim_sees_live_runs_in_markers_and_run_locks(tmp_path):
  job = sweep_members.Job({}, 0, "base", "base,seed=0", str(tmp_path / "w"), str(tmp_path / "m" / "log.txt"))
  sleeper = subprocess.Popen(["sleep", "60"])
  try:
    dead = subprocess.Popen(["true"])
    dead.wait()
    # A stale marker (its process is gone) is taken over; a live one is respected.
    os.makedirs(os.path.dirname(job.marker))
    with open(job.marker, "w") as f:
      json.dump({"pid": dead.pid, "host": sweep_runner.HOST}, f)
    assert sweep_runner.claim(job) is None
    assert json.load(open(job.marker))["pid"] == os.getpid()
    sweep_runner.release(job)
    assert not os.path.exists(job.marker)
    with open(job.marker, "w") as f:
      json.dump({"pid": sleeper.pid, "host": sweep_runner.HOST}, f)
    assert sweep_runner.claim(job)["pid"] == sleeper.pid
    with open(job.marker, "w") as f:  # the same pid on another host says nothing here
      json.dump({"pid": sleeper.pid, "host": sweep_runner.HOST + "-other"}, f)
    assert sweep_runner.claim(job) is None
    sweep_runner.release(job)
    # The run's own <workdir>/.lock ({"pid", "host", "start"}).
    os.makedirs(job.workdir)
    with open(os.path.join(job.workdir, ".lock"), "w") as f:
      json.dump({"pid": sleeper.pid, "host": sweep_runner.HOST, "start": 0}, f)
    assert sweep_runner.claim(job)["pid"] == sleeper.pid and not os.path.exists(job.marker)
    with open(os.path.join(job.workdir, ".lock"), "w") as f:
      json.dump({"pid": dead.pid, "host": sweep_runner.HOST, "start": 0}, f)
    assert sweep_runner.claim(job) is None
  finally:
    sleeper.kill()
    sleeper.wait()


def _proc_cmdlines() -> list[str]:
  out = []
  for pid in os.listdir("/proc"):
    if pid.isdigit() and workdir_lock.pid_alive(int(pid)):
      try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
          out.append(f.read().replace(b"\0", b" ").decode(errors="replace"))
      except OSError:
        pass
  return out


def _wait_for(predicate, timeout: float, what: str):
  deadline = time.time() + timeout
  while time.time() < deadline:
    value = predicate()
    if value:
      return value
    time.sleep(0.3)
  raise AssertionError(f"timed out after {timeout} s waiting for {what}")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_rerun_skips_a_running_member_and_kill_9_of_the_driver_stops_it(tfds_dir, tmp_path):
  """A second driver of the same sweep doesn't start the member the first one runs; kill -9 of
  the first driver makes the member save a checkpoint and exit."""
  del tfds_dir
  sweep_dir = tmp_path / "sweep"
  name = "optimizer.learning_rate=1,seed=0"
  member_dir = sweep_dir / name
  args = [sys.executable, "scripts/sweep.py", "--config=configs/cnn_seed.py:test",
          "--grid", "optimizer.learning_rate=1.0", f"--workdir={sweep_dir}",
          "--overrides", "num_epochs=500", "steps_per_call=1"]
  driver = subprocess.Popen(args, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
  member_pid = None
  try:
    _wait_for(lambda: (member_dir / "metrics.jsonl").exists(), 180, "the member's first epoch")
    member_pid = json.loads((member_dir / ".running").read_text())["pid"]
    assert member_pid != driver.pid and workdir_lock.pid_alive(member_pid)

    second = run_module(args[1:], timeout=120)
    assert second.returncode == 0, second.stdout + second.stderr
    assert f"skip {name} (already running: pid {member_pid} on {sweep_runner.HOST})" in second.stdout
    assert (member_dir / "log.txt").read_text().count("\n=== ") == 1
    assert sum(f"--workdir={member_dir} " in c for c in _proc_cmdlines()) == 1
    assert not (member_dir / "results.json").exists()

    driver.kill()  # SIGKILL: no handler runs in the driver
    driver.wait(timeout=30)
    _wait_for(lambda: not workdir_lock.pid_alive(member_pid), 90, "the member to exit")
    log = (member_dir / "log.txt").read_text()
    assert "Preempted: saved step" in log, log[-2000:]
    assert any(p.name.isdigit() for p in (member_dir / "checkpoints").iterdir())
    assert not (member_dir / "results.json").exists()
  finally:
    if driver.poll() is None:
      driver.kill()
      driver.wait()
    if member_pid and workdir_lock.pid_alive(member_pid):
      os.kill(member_pid, signal.SIGKILL)
