"""scripts/sweep.py --launcher=slurm on a real single-node SLURM: array, preemption, requeue, summary.

The `slurm` fixture starts munged, slurmctld and slurmd (Debian's slurm-wlm and munge) as root with
a private slurm.conf, key, ports and state under a temporary folder, and skips when the binaries
are missing, when not root, or when the node isn't idle within 60 s (in CI, with $CI set, each of
these fails instead). `.ci/run` installs them.
"""

import csv
import json
import math
import os
import re
import shutil
import socket
import subprocess
import sys
import time

import pytest

from conftest import REPO, skip_or_fail

SBIN = "/usr/sbin:/sbin"
DAEMONS = ("munged", "slurmctld", "slurmd")
CLIENTS = ("sbatch", "squeue", "scontrol", "scancel", "sinfo", "srun")
START_TIMEOUT_S = 60


def _which(name: str) -> str | None:
  return shutil.which(name) or shutil.which(name, path=SBIN)


def _free_ports(n: int) -> list[int]:
  socks = [socket.socket() for _ in range(n)]
  for s in socks:
    s.bind(("127.0.0.1", 0))
  ports = [s.getsockname()[1] for s in socks]
  for s in socks:
    s.close()
  return ports


def _tail(path, lines: int = 15) -> str:
  try:
    with open(path, errors="replace") as f:
      return "".join(f.readlines()[-lines:])
  except OSError:
    return "(none)"


class Slurm:
  """A running one-node cluster: `run` calls a client with this cluster's SLURM_CONF."""

  def __init__(self, root, conf: str, procs: dict):
    self.root, self.conf, self.procs = root, conf, procs
    self.env = dict(os.environ, SLURM_CONF=conf)

  def run(self, *cmd: str, check: bool = True) -> str:
    r = subprocess.run(cmd, env=self.env, capture_output=True, text=True, timeout=60, check=False)
    if check and r.returncode:
      raise AssertionError(f"{' '.join(cmd)}: exit {r.returncode}: {r.stdout}{r.stderr}")
    return r.stdout

  def jobs(self) -> list[str]:
    """Pending or running jobs (and array tasks) as "ID STATE" lines."""
    return self.run("squeue", "-h", "-r", "-o", "%i %T").split("\n")[:-1]

  def logs(self) -> str:
    return "\n".join(f"--- {name}:\n{_tail(self.root / 'log' / f'{name}.log')}"
                     for name in DAEMONS)


def _slurm_conf(root, host: str, ctld_port: int, d_port: int) -> str:
  return f"""\
ClusterName=sweeptest
SlurmctldHost={host}(127.0.0.1)
SlurmctldPort={ctld_port}
SlurmdPort={d_port}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
# Our own munged; a requeued job waits cred_expire+1 s before it may start again (default 120).
AuthInfo=socket={root}/munge/munge.socket,cred_expire=10
StateSaveLocation={root}/state
SlurmdSpoolDir={root}/spool
SlurmctldPidFile={root}/slurmctld.pid
SlurmdPidFile={root}/slurmd.pid
SlurmctldLogFile={root}/log/slurmctld.log
SlurmdLogFile={root}/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
MailProg=/bin/true
ReturnToService=2
JobRequeue=1
MinJobAge=600
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=2,bf_interval=2
NodeName={host} NodeAddr=127.0.0.1 CPUs=2 RealMemory=2000 State=UNKNOWN
PartitionName=debug Nodes={host} Default=YES MaxTime=INFINITE State=UP
"""


@pytest.fixture
def slurm(tmp_path_factory):
  missing = [b for b in DAEMONS + CLIENTS if not _which(b)]
  if missing:
    skip_or_fail(f"SLURM not installed (no {', '.join(missing)}); "
                 "apt-get install slurm-wlm munge (.ci/run does)")
  if os.geteuid() != 0:
    skip_or_fail("starting slurmd and munged here needs root")
  root = tmp_path_factory.mktemp("slurm")
  for d in ("munge", "state", "spool", "log"):
    (root / d).mkdir()
  os.chmod(root / "munge", 0o755)  # clients reach the socket
  key = root / "munge" / "munge.key"
  key.write_bytes(os.urandom(1024))
  os.chmod(key, 0o600)
  host = socket.gethostname().split(".")[0]
  conf = root / "slurm.conf"
  conf.write_text(_slurm_conf(root, host, *_free_ports(2)))
  commands = {
      "munged": [_which("munged"), "-F", "--force", f"--key-file={key}",
                 f"--socket={root}/munge/munge.socket", f"--pid-file={root}/munge/munged.pid",
                 f"--seed-file={root}/munge/seed", f"--log-file={root}/log/munged-file.log"],
      "slurmctld": [_which("slurmctld"), "-D", "-i", "-f", str(conf)],
      "slurmd": [_which("slurmd"), "-D", "-f", str(conf), "-N", host],
  }
  procs = {}
  cluster = Slurm(root, str(conf), procs)

  def stop():
    try:  # the jobs first: a job step outlives a stopped slurmd
      ids = [line.split()[0] for line in cluster.jobs()]
      if ids:
        cluster.run("scancel", *ids, check=False)
        deadline = time.time() + 30
        while cluster.jobs() and time.time() < deadline:
          time.sleep(1)
    except Exception:  # pylint: disable=broad-except
      pass
    for name in reversed(list(procs)):
      procs[name].terminate()
    for name in reversed(list(procs)):
      try:
        procs[name].wait(timeout=15)
      except subprocess.TimeoutExpired:
        procs[name].kill()
        procs[name].wait()

  try:
    for name, cmd in commands.items():
      with open(root / "log" / f"{name}.log", "w") as log:
        procs[name] = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT,
                                       stdin=subprocess.DEVNULL, env=cluster.env)
      if name == "munged":
        deadline = time.time() + 10
        while not (root / "munge" / "munge.socket").exists() and time.time() < deadline:
          time.sleep(0.1)
    deadline, state = time.time() + START_TIMEOUT_S, ""
    while time.time() < deadline:
      dead = [n for n, p in procs.items() if p.poll() is not None]
      if dead:
        break
      state = cluster.run("sinfo", "-h", "-o", "%T", check=False).strip()
      if state == "idle":
        break
      time.sleep(1)
    if state != "idle":
      logs = cluster.logs()
      stop()
      skip_or_fail(f"SLURM didn't come up within {START_TIMEOUT_S} s (node state {state!r}):\n"
                   f"{logs}")
  except BaseException:
    stop()
    raise
  yield cluster
  stop()


def _wait(predicate, timeout: float, what: str, cluster: Slurm, interval: float = 0.5):
  deadline = time.time() + timeout
  while time.time() < deadline:
    value = predicate()
    if value:
      return value
    time.sleep(interval)
  raise AssertionError(f"timed out after {timeout} s waiting for {what}; jobs: {cluster.jobs()}"
                       f"\n{cluster.logs()}")


def test_sweep_array_preempt_requeue_and_summary(slurm, tfds_dir, tmp_path):
  """Two CNN members as one array; member 0 gets SIGTERM mid-training, saves, requeues itself and
  resumes; the dependent job writes the summary with both members."""
  del tfds_dir  # sets TFDS_DATA_DIR / TFDS_MANUAL_DIR, which sbatch passes on to the jobs
  sweep_dir = tmp_path / "sweep"
  argv = [sys.executable, "scripts/sweep.py", "--config=configs/cnn_seed.py:test",
          "--grid", "optimizer.learning_rate=0.5,1.0", f"--workdir={sweep_dir}",
          "--launcher=slurm", "--slurm-arg=--cpus-per-task=1",
          "--overrides", "num_epochs=30", "steps_per_call=1"]
  r = subprocess.run(argv, cwd=REPO, env=slurm.env, capture_output=True, text=True, timeout=300)
  assert r.returncode == 0, r.stdout + r.stderr
  array_id, summary_id = re.search(r"Submitted array job (\d+) and summary job (\d+)",
                                   r.stdout).groups()
  assert (sweep_dir / "slurm" / "array.sbatch").exists()
  names = ["optimizer.learning_rate=0.5,seed=0", "optimizer.learning_rate=1,seed=0"]
  member0 = sweep_dir / names[0]

  # Preempt task 0 while it trains: the run saves a checkpoint and exits 0 without results.json.
  _wait(lambda: (member0 / "metrics.jsonl").exists(), 240, "task 0's first epoch", slurm)
  assert not (member0 / "results.json").exists(), "too fast to preempt: raise num_epochs"
  slurm.run("scancel", "--signal=TERM", f"{array_id}_0")

  # Everything ends: both tasks (task 0 after its requeue) and then the summary job.
  _wait(lambda: not slurm.jobs(), 480, "the array and summary jobs to end", slurm, interval=2)

  log0 = (member0 / "log.txt").read_text()
  attempts = log0.split("\n=== ")[1:]
  assert len(attempts) == 2, log0
  assert "Preempted: saved step" in attempts[0] and "restart 0" in attempts[0]
  assert "restart 1" in attempts[1] and "Preempted" not in attempts[1]
  info0 = slurm.run("scontrol", "show", "job", f"{array_id}_0")
  assert "Restarts=1" in info0 and "JobState=COMPLETED" in info0, info0
  info1 = slurm.run("scontrol", "show", "job", f"{array_id}_1")
  assert "Restarts=0" in info1 and "JobState=COMPLETED" in info1, info1
  assert "requeueing" in _tail(sweep_dir / "slurm" / f"{array_id}_0.out", 50)
  # The resumed attempt continued from the saved epoch instead of starting over.
  epochs = [json.loads(line)["epoch"]
            for line in (member0 / "metrics.jsonl").read_text().splitlines() if line.strip()]
  assert epochs == list(range(1, 31)), epochs

  info = slurm.run("scontrol", "show", "job", summary_id)
  assert "JobState=COMPLETED" in info, info + _tail(sweep_dir / "slurm" / f"summary_{summary_id}.out")
  with open(sweep_dir / "summary.csv") as f:
    rows = list(csv.DictReader(f))
  assert sorted(r["member"] for r in rows) == ["optimizer.learning_rate=0.5",
                                               "optimizer.learning_rate=1"]
  for row in rows:
    accuracy = float(row["test.accuracy"])
    assert math.isfinite(accuracy) and 0.1 < accuracy <= 1.0, row

  # Resubmitting the finished sweep submits nothing and only rewrites the summary.
  r = subprocess.run(argv, cwd=REPO, env=slurm.env, capture_output=True, text=True, timeout=300)
  assert r.returncode == 0 and "(2 finished, 0 to run)" in r.stdout, r.stdout + r.stderr
  assert "Submitted" not in r.stdout and not slurm.jobs()
