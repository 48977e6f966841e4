"""Faults a run must survive or report in one line: kill -9, a shared workdir, damaged checkpoints,
a full or read-only disk, bad input, Ctrl-C. Each checks the message and that nothing was lost."""

import contextlib
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import time

import jax.numpy as jnp
import pytest

from common.run import checkpoint
from common.run import reporting
from common.run import workdir_lock
from conftest import REPO, latest_params, run_module, skip_or_fail

CNN = ["-m", "cnn.main", "--config=configs/cnn_seed.py:test", "--config.steps_per_call=1"]
STEPS_PER_EPOCH = 16  # cnn_seed:test

# Runs cnn.main with Writer._append replaced: at epoch $KILL_AT_EPOCH it writes half the line,
# then kills its own process with SIGKILL (a crash in the middle of the metrics write).
KILL_MID_LINE = """
import json, os, runpy, signal, sys
from common.run import reporting
original = reporting.Writer._append
def append(self, record):
  if record["epoch"] == int(os.environ["KILL_AT_EPOCH"]):
    line = json.dumps(record)
    with open(self.path, "a") as f:
      f.write(line[:len(line) // 2])
    os.kill(os.getpid(), signal.SIGKILL)
  original(self, record)
reporting.Writer._append = append
sys.argv = ["cnn.main"] + sys.argv[1:]
runpy.run_module("cnn.main", run_name="__main__", alter_sys=True)
"""


def _error_line(r: subprocess.CompletedProcess) -> str:
  """The run's one-line error: it failed, with no traceback, and its last stderr line says why."""
  assert r.returncode != 0, r.stdout[-2000:]
  assert "Traceback" not in r.stderr, r.stderr[-3000:]
  lines = [l for l in r.stderr.splitlines() if l.strip()]
  assert [l for l in lines if l.startswith("Error:")] == lines[-1:], r.stderr[-3000:]
  return lines[-1]


def _epochs(workdir) -> list[int]:
  rows, dropped = reporting.read_records(os.path.join(workdir, "metrics.jsonl"))
  assert dropped == 0
  return [r["epoch"] for r in rows]


def _start(args, workdir):
  return subprocess.Popen([sys.executable, *args, f"--workdir={workdir}"], cwd=REPO,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for_epochs(workdir, n: int, proc, timeout: float = 300) -> None:
  deadline = time.time() + timeout
  while time.time() < deadline and proc.poll() is None:
    rows, _ = reporting.read_records(os.path.join(workdir, "metrics.jsonl"))
    if len(rows) >= n:
      return
    time.sleep(0.05)
  raise AssertionError(f"no {n} epochs in {workdir}: {proc.poll()}")


@contextlib.contextmanager
def _tmpfs(path, options: str):
  """A tmpfs mounted at path (root only); skips the test where mounting isn't allowed (fails in
  CI)."""
  os.makedirs(path, exist_ok=True)
  r = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)],
                     capture_output=True, text=True)
  if r.returncode != 0:
    skip_or_fail(f"mount -t tmpfs is not allowed here: {r.stderr.strip()}")
  try:
    yield path
  finally:
    subprocess.run(["umount", "-l", str(path)], check=False)


# metrics.jsonl and other workdir files.

def test_kill9_mid_line_then_rerun_keeps_every_epoch(tfds_dir, tmp_path):
  workdir = tmp_path / "run"
  args = CNN + ["--config.num_epochs=5", f"--workdir={workdir}"]
  r = run_module(["-c", KILL_MID_LINE] + args[2:], env_extra={"KILL_AT_EPOCH": "3"})
  assert r.returncode == -signal.SIGKILL, r.stderr[-2000:]
  text = (workdir / "metrics.jsonl").read_text()
  assert text.count("\n") == 2 and not text.endswith("\n")  # two lines and half of the third
  r = run_module(args)
  assert r.returncode == 0, r.stderr[-3000:]
  assert "partial or corrupt" in r.stderr
  assert _epochs(workdir) == [1, 2, 3, 4, 5]
  assert json.loads((workdir / "results.json").read_text())["final_epoch"]["epoch"] == 5


def test_kill9_at_random_points_never_empties_metrics(tfds_dir, tmp_path):
  workdir = tmp_path / "run"
  args = CNN + ["--config.num_epochs=8"]
  rng = random.Random(0)
  seen = 0
  for _ in range(3):
    proc = _start(args, workdir)
    _wait_for_epochs(workdir, seen + 1, proc)
    time.sleep(rng.uniform(0, 0.5))
    proc.kill()
    proc.communicate()
    rows, dropped = reporting.read_records(workdir / "metrics.jsonl")
    epochs = [row["epoch"] for row in rows]
    assert dropped <= 1 and epochs and epochs == list(range(1, len(epochs) + 1))
    seen = len(epochs)
  r = run_module(args + [f"--workdir={workdir}"])
  assert r.returncode == 0, r.stderr[-3000:]
  assert _epochs(workdir) == list(range(1, 9))


def test_history_rebuilds_lost_epochs_from_checkpoint_meta(tmp_path, caplog):
  path = tmp_path / "metrics.jsonl"
  rows = [{"epoch": e, "step": 16 * e, "loss": 1.0 / e} for e in range(1, 6)]
  path.write_text(json.dumps(rows[0]) + "\n" + "{not json\n" + json.dumps(rows[2]) + "\n"
                  + json.dumps(rows[4])[:9])
  writer = reporting.Writer(str(tmp_path))
  assert writer.history(up_to_epoch=4, recovered=rows) == rows[:4]
  assert "partial or corrupt" in caplog.text and "lacked epochs 2, 4" in caplog.text
  assert [json.loads(l) for l in path.read_text().splitlines()] == rows[:4]
  writer.write_epoch(rows[4])
  writer.close()
  path.unlink()  # a file that is gone altogether
  assert reporting.Writer(str(tmp_path)).history(up_to_epoch=5, recovered=rows) == rows
  assert len(path.read_text().splitlines()) == 5


def test_append_after_a_cut_line_starts_a_new_line(tmp_path):
  path = tmp_path / "metrics.jsonl"
  path.write_text('{"epoch": 1, "step": 16}\n{"epoch": 2, "st')
  writer = reporting.Writer(str(tmp_path))
  writer.write_epoch({"epoch": 2, "step": 32})
  writer.close()
  rows, dropped = reporting.read_records(path)
  assert [r["epoch"] for r in rows] == [1, 2] and dropped == 1


def test_write_json_leaves_no_temp_file(tmp_path):
  reporting.write_json(str(tmp_path), "results.json", {"a": 1})
  reporting.write_json(str(tmp_path), "results.json", {"a": 2})
  assert os.listdir(tmp_path) == ["results.json"]
  assert json.loads((tmp_path / "results.json").read_text()) == {"a": 2}


# One run per workdir.

def test_second_run_is_refused_and_a_dead_runs_lock_is_taken_over(tfds_dir, tmp_path):
  workdir = tmp_path / "run"
  args = CNN + ["--config.num_epochs=1000"]  # still running when the second one starts
  first = _start(args, workdir)
  try:
    _wait_for_epochs(workdir, 1, first)
    line = _error_line(run_module(args + [f"--workdir={workdir}"]))
    assert re.fullmatch(rf"Error: Workdir {re.escape(str(workdir))} is in use by pid {first.pid} "
                        rf"on host {re.escape(socket.gethostname())} since \S+; wait for it or "
                        r"stop it\.", line), line
  finally:
    first.kill()
    first.communicate()
  assert json.loads((workdir / ".lock").read_text())["pid"] == first.pid  # left by kill -9
  done = latest_params(str(workdir))[1] // STEPS_PER_EPOCH
  r = run_module(args + [f"--config.num_epochs={done + 1}", f"--workdir={workdir}"])
  assert r.returncode == 0, r.stderr[-3000:]
  assert f"Taking over the lock of workdir {workdir} from pid {first.pid}" in r.stderr
  assert f"Epoch {done + 1}/{done + 1}" in r.stdout
  assert _epochs(workdir) == list(range(1, done + 2)) and not (workdir / ".lock").exists()


def test_lock_refuses_holds_and_takes_over_stale(tmp_path, monkeypatch):
  lock = workdir_lock.Lock.acquire(str(tmp_path), argv=["x"])
  held = json.loads((tmp_path / ".lock").read_text())
  assert held["pid"] == os.getpid() and held["argv"] == ["x"]
  assert {"host", "start", "heartbeat"} <= set(held)
  with pytest.raises(workdir_lock.WorkdirLockError, match="is in use by pid"):
    workdir_lock.Lock.acquire(str(tmp_path))
  lock.refresh()
  lock.release()
  assert not (tmp_path / ".lock").exists()
  # Another host's lock is held while its heartbeat is fresh, stale once it stops.
  other = dict(held, host="elsewhere", pid=1)
  assert workdir_lock.stale_reason(other) is None
  other["heartbeat_unix"] -= workdir_lock.STALE_S + 1
  assert "no heartbeat" in workdir_lock.stale_reason(other)
  (tmp_path / ".lock").write_text(json.dumps(other))
  workdir_lock.Lock.acquire(str(tmp_path)).release()
  # A lock cut short while being written: held while fresh, then stale.
  (tmp_path / ".lock").write_text('{"pid": 4')
  with pytest.raises(workdir_lock.WorkdirLockError, match=r"in use by pid \? on host \?"):
    workdir_lock.Lock.acquire(str(tmp_path))
  monkeypatch.setattr(workdir_lock, "STALE_S", -1.0)
  workdir_lock.Lock.acquire(str(tmp_path)).release()


def test_heartbeat_recreates_a_lock_moved_away(tmp_path):
  lock = workdir_lock.Lock.acquire(str(tmp_path))
  (tmp_path / ".lock").unlink()  # what `--fresh` archiving did before it learnt to skip .lock
  lock.refresh()
  assert json.loads((tmp_path / ".lock").read_text())["token"] == lock.record["token"]
  lock.release()


# Damaged checkpoints.

def _tiny_state(step: int, size: int = 1000) -> dict:
  return {"w": jnp.full((size,), float(step)), "n": jnp.int32(step)}


def _tiny_checkpoints(workdir, steps):
  ckpts = checkpoint.Checkpoints(str(workdir), max_to_keep=10)
  for s in steps:
    ckpts.save(s, _tiny_state(s), {"step": s})
  ckpts.close()


def _restore(workdir, size: int = 1000, **kwargs):
  ckpts = checkpoint.Checkpoints(str(workdir), max_to_keep=10, **kwargs)
  latest = ckpts.latest_step()
  state, meta = ckpts.restore(_tiny_state(0, size))
  ckpts.close()
  assert float(state["w"][0]) == meta["step"] == ckpts.restored_step
  return latest, meta["step"], ckpts.skipped


def _largest_file(folder):
  files = [os.path.join(r, f) for r, _, fs in os.walk(folder) for f in fs]
  return max(files, key=os.path.getsize)


@pytest.mark.parametrize("damage", ["truncated", "no_manifest", "no_state", "empty", "no_sizes"])
def test_damaged_latest_checkpoint_falls_back(tmp_path, caplog, damage):
  root = tmp_path / "checkpoints"
  _tiny_checkpoints(tmp_path, [1, 2, 3])
  latest = root / "3"
  if damage in ("truncated", "no_sizes"):
    if damage == "no_sizes":  # a checkpoint without a sizes record: found only by restoring
      (latest / checkpoint.SIZES_FILE).unlink()
    f = _largest_file(latest / "state")
    os.truncate(f, os.path.getsize(f) // 2)
  elif damage == "no_manifest":
    (latest / "state" / "manifest.ocdbt").unlink()
  elif damage == "no_state":
    shutil.rmtree(latest / "state")
  else:
    shutil.rmtree(latest)
    latest.mkdir()
  read_only = _restore(tmp_path, read_only=True)
  assert read_only[1:] == (2, {3: read_only[2][3]}) and latest.exists()  # skipped, not moved
  found, restored, skipped = _restore(tmp_path)
  assert restored == 2 and list(skipped) == [3]
  assert found == (3 if damage == "no_sizes" else 2)  # found before restoring when cheap
  assert not latest.exists()
  moved = list((tmp_path / checkpoint.DAMAGED_DIR).iterdir())
  assert [p.name.split("-")[0] for p in moved] == ["3"]
  assert "Checkpoint " + str(latest) + " is damaged" in caplog.text
  assert _restore(tmp_path)[:2] == (2, 2)  # the next run no longer sees it


def test_no_intact_checkpoint_is_one_line_error(tmp_path):
  _tiny_checkpoints(tmp_path, [1, 2])
  for s in (1, 2):
    (tmp_path / "checkpoints" / str(s) / "state" / "manifest.ocdbt").unlink()
  with pytest.raises(checkpoint.CheckpointError, match=r"No intact checkpoint in .*step 2: "
                     r"state/manifest.ocdbt missing; step 1: .*move that folder aside") as e:
    checkpoint.Checkpoints(str(tmp_path), 3)
  assert "\n" not in str(e.value)
  assert sorted(os.listdir(tmp_path / "checkpoints")) == ["1", "2"]  # nothing moved


def test_restore_that_fails_everywhere_moves_nothing(tmp_path):
  """A state of another shape fails on every step: that's a changed config, not damage."""
  _tiny_checkpoints(tmp_path, [1, 2])
  ckpts = checkpoint.Checkpoints(str(tmp_path), 3)
  with pytest.raises(checkpoint.CheckpointError, match="could be restored .*another --workdir"):
    ckpts.restore(_tiny_state(0, 7))
  ckpts.close()
  assert sorted(os.listdir(tmp_path / "checkpoints")) == ["1", "2"]


def test_run_resumes_past_damaged_checkpoints(tfds_dir, tmp_path):
  workdir = tmp_path / "run"
  args = CNN + [f"--workdir={workdir}"]
  assert run_module(args + ["--config.num_epochs=3"]).returncode == 0
  root = workdir / "checkpoints"
  f = _largest_file(root / "48" / "state")
  os.truncate(f, os.path.getsize(f) // 2)
  (root / "99").mkdir()
  r = run_module(args + ["--config.num_epochs=4"])
  assert r.returncode == 0, r.stderr[-3000:]
  assert "Traceback" not in r.stderr
  for step in (48, 99):
    assert re.search(rf"Checkpoint {root / str(step)} is damaged \(.*\); moved it to", r.stderr)
  assert sorted(p.name.split("-")[0] for p in (workdir / checkpoint.DAMAGED_DIR).iterdir()) == [
      "48", "99"]
  assert r.stdout.count("Epoch 3/4") == 1 and "Epoch 2/4" not in r.stdout  # resumed at step 32
  assert _epochs(workdir) == [1, 2, 3, 4]
  assert latest_params(str(workdir))[1] == 64


# Disks that can't be written.

def test_full_disk_stops_at_once_and_keeps_last_checkpoint(tfds_dir, tmp_path):
  with _tmpfs(tmp_path / "small", "size=1m") as mnt:
    workdir = mnt / "run"
    r = run_module(CNN + ["--config.num_epochs=20", f"--workdir={workdir}"])
    line = _error_line(r)
    m = re.fullmatch(rf"Error: Could not write checkpoint {workdir}/checkpoints/(\d+) \(No space "
                     r"left on device\): free space .* resume from the last good checkpoint "
                     r"\(step (\d+)\)\.", line)
    assert m, line
    failed, kept = int(m[1]), int(m[2])
    assert kept == failed - STEPS_PER_EPOCH
    last_epoch = max(int(e) for e in re.findall(r"^Epoch (\d+)/20", r.stdout, re.M))
    assert last_epoch == failed // STEPS_PER_EPOCH  # stopped right after the failed save
    assert latest_params(str(workdir))[1] == kept
    assert _epochs(workdir) == list(range(1, last_epoch + 1))
    assert not (workdir / ".lock").exists()


def test_full_disk_checkpoint_error_in_process(tmp_path):
  with _tmpfs(tmp_path / "small", "size=256k") as mnt:
    ckpts = checkpoint.Checkpoints(str(mnt), max_to_keep=10)
    with pytest.raises(checkpoint.CheckpointError, match="No space left on device") as e:
      for s in range(1, 50):
        ckpts.save(s, _tiny_state(s, 20_000), {"step": s})
    ckpts.close()
    assert "\n" not in str(e.value) and s > 1
    assert _restore(mnt, 20_000)[1] == s - 1


def test_read_only_workdir_is_one_line(tfds_dir, tmp_path):
  with _tmpfs(tmp_path / "ro", "ro,size=64k") as mnt:
    line = _error_line(run_module(CNN + [f"--workdir={mnt}"]))
    assert line == (f"Error: Cannot write to workdir {mnt} (Read-only file system): make it "
                    "writable or pass another --workdir.")


# Bad input.

def test_bad_input_is_one_line(tfds_dir, tmp_path):
  line = _error_line(run_module(["-m", "cnn.main", "--config=configs/nope.py",
                                 f"--workdir={tmp_path / 'a'}"]))
  assert line.startswith("Error: config file configs/nope.py not found; those in configs/: ")
  assert "cnn_seed.py" in line
  plain = tmp_path / "plain"
  plain.write_text("")
  line = _error_line(run_module(CNN + [f"--workdir={plain}"]))
  assert line == f"Error: Workdir {plain} is a file, not a folder: pass another --workdir."
  for text in ("", '{"name": "cnn_se'):
    (tmp_path / "b").mkdir(exist_ok=True)
    (tmp_path / "b" / "config.json").write_text(text)
    line = _error_line(run_module(CNN + [f"--workdir={tmp_path / 'b'}"]))
    assert re.fullmatch(rf"Error: {tmp_path}/b/config.json is unreadable \(.+\)\. If the run in "
                        r".* delete that file and rerun to resume .*", line), line
    assert (tmp_path / "b" / "config.json").read_text() == text  # left for the user to decide
    assert not (tmp_path / "b" / ".lock").exists()
  r = run_module(CNN + ["--debug", f"--workdir={tmp_path / 'b'}"])
  assert r.returncode != 0 and "Traceback" in r.stderr


# Ctrl-C.

def test_ctrl_c_saves_and_rerun_resumes(tfds_dir, tmp_path):
  workdir = tmp_path / "run"
  args = CNN + ["--config.num_epochs=10"]
  proc = _start(args, workdir)
  _wait_for_epochs(workdir, 1, proc)
  proc.send_signal(signal.SIGINT)
  out, err = proc.communicate(timeout=300)
  assert proc.returncode == 0, err[-3000:]
  assert "Traceback" not in err and "KeyboardInterrupt" not in err
  assert "Preempted: saved step" in out and "Ctrl-C: saving" in err
  _, step = latest_params(str(workdir))
  assert 0 < step < 10 * STEPS_PER_EPOCH and not (workdir / ".lock").exists()
  r = run_module(args + [f"--workdir={workdir}"])
  assert r.returncode == 0, r.stderr[-3000:]
  assert "Epoch 1/10" not in r.stdout and "Epoch 10/10" in r.stdout
  assert _epochs(workdir) == list(range(1, 11))


def test_second_ctrl_c_aborts_and_handlers_are_restored():
  before = signal.getsignal(signal.SIGINT)
  preemption = checkpoint.Preemption()
  os.kill(os.getpid(), signal.SIGINT)
  assert preemption.reached(0)
  with pytest.raises(KeyboardInterrupt):
    os.kill(os.getpid(), signal.SIGINT)
  preemption.close()
  assert signal.getsignal(signal.SIGINT) is before
  assert signal.getsignal(signal.SIGTERM) != preemption._handle  # pylint: disable=protected-access
