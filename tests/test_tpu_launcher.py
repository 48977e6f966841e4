"""scripts/tpu.py --dry-run: the exact gcloud commands for create, setup, run, logs and delete."""

import importlib.util
import shlex

import pytest

from conftest import REPO, run_module

_spec = importlib.util.spec_from_file_location("scripts_tpu", REPO / "scripts" / "tpu.py")
tpu = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(tpu)

WHERE = ["--name=gan", "--zone=us-west4-a", "--dry-run"]


def commands(capsys, *argv) -> list[list[str]]:
  assert tpu.main(list(argv)) == 0
  return [shlex.split(line) for line in capsys.readouterr().out.splitlines()]


def test_create_spot_queued(capsys):
  (cmd,) = commands(capsys, "create", *WHERE, "--accelerator-type=v5litepod-16",
                    "--version=tpu-ubuntu2204-base", "--spot", "--queued", "--project=proj")
  assert cmd[:7] == ["gcloud", "alpha", "compute", "tpus", "queued-resources", "create", "gan"]
  for flag in ("--node-id=gan", "--zone=us-west4-a", "--accelerator-type=v5litepod-16",
               "--runtime-version=tpu-ubuntu2204-base", "--spot", "--project=proj"):
    assert flag in cmd


def test_create_plain_vm(capsys):
  (cmd,) = commands(capsys, "create", *WHERE, "--accelerator-type=v4-8",
                    "--version=tpu-ubuntu2204-base")
  assert cmd[:6] == ["gcloud", "compute", "tpus", "tpu-vm", "create", "gan"]
  assert "--version=tpu-ubuntu2204-base" in cmd and "--accelerator-type=v4-8" in cmd
  assert "--spot" not in cmd


def test_setup_copies_and_installs_on_every_worker(capsys):
  pack, copy, install = commands(capsys, "setup", *WHERE)
  assert pack[:3] == ["tar", "-czf", "/tmp/jaxgan-gan.tar.gz"] and "--exclude=.git" in pack
  assert pack[-3:] == ["-C", str(REPO), "."]
  assert copy[:5] == ["gcloud", "compute", "tpus", "tpu-vm", "scp"]
  assert "gan:~/jaxgan.tar.gz" in copy and "--worker=all" in copy
  assert install[:6] == ["gcloud", "compute", "tpus", "tpu-vm", "ssh", "gan"]
  assert "--worker=all" in install and "--zone=us-west4-a" in install
  remote = next(a for a in install if a.startswith("--command=")).removeprefix("--command=")
  assert "tar -xzf ~/jaxgan.tar.gz -C ~/jaxgan" in remote
  assert "python3.11 -m venv ~/venv" in remote
  assert "cd ~/jaxgan && ~/venv/bin/pip install -q -e . 'jax[tpu]'" in remote


def test_run_uses_nohup_on_all_workers_with_a_log(capsys):
  (cmd,) = commands(capsys, "run", *WHERE, "--log=acgan.log", "--env=TFDS_DATA_DIR=gs://b/tfds",
                    "--", "python", "-m", "gan.main", "--config=configs/acgan.py",
                    "--workdir=gs://bucket/runs/acgan")
  assert cmd[:6] == ["gcloud", "compute", "tpus", "tpu-vm", "ssh", "gan"]
  assert "--worker=all" in cmd
  remote = next(a for a in cmd if a.startswith("--command=")).removeprefix("--command=")
  assert remote.startswith("cd ~/jaxgan && ")
  assert "export TFDS_DATA_DIR=gs://b/tfds" in remote
  assert ("nohup python -m gan.main --config=configs/acgan.py --workdir=gs://bucket/runs/acgan "
          ">> ~/logs/acgan.log 2>&1 < /dev/null &") in remote
  assert "export PATH=$HOME/venv/bin:$PATH" in remote


def test_run_foreground_waits_and_tees(capsys):
  (cmd,) = commands(capsys, "run", *WHERE, "--foreground", "--", "python", "-m", "cnn.main",
                    "--config=configs/cnn.py")
  remote = next(a for a in cmd if a.startswith("--command=")).removeprefix("--command=")
  assert "nohup" not in remote
  assert "python -m cnn.main --config=configs/cnn.py 2>&1 | tee -a ~/logs/run.log" in remote


def test_logs_and_delete(capsys):
  (cmd,) = commands(capsys, "logs", *WHERE, "--worker=3", "--log=acgan.log", "--follow")
  assert "--worker=3" in cmd and "--command=tail -n 100 -f ~/logs/acgan.log" in cmd
  (cmd,) = commands(capsys, "delete", *WHERE)
  assert cmd[:6] == ["gcloud", "compute", "tpus", "tpu-vm", "delete", "gan"]
  assert sorted(cmd[6:]) == ["--quiet", "--zone=us-west4-a"]
  (cmd,) = commands(capsys, "delete", *WHERE, "--queued")
  assert cmd[:7] == ["gcloud", "alpha", "compute", "tpus", "queued-resources", "delete", "gan"]
  assert "--force" in cmd and "--quiet" in cmd


def test_run_needs_a_command(capsys):
  with pytest.raises(SystemExit, match="give the command"):
    tpu.main(["run", *WHERE])


def test_cli_dry_run_runs_nothing():
  r = run_module(["scripts/tpu.py", "create", *WHERE, "--spot"])
  assert r.returncode == 0, r.stderr
  assert r.stdout.startswith("gcloud compute tpus tpu-vm create gan ") and "--spot" in r.stdout
