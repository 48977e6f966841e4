"""Cloud TPU VM launcher: create a slice, copy and install the repo on every worker, run, tail, delete.

    python scripts/tpu.py create --name=gan --zone=us-west4-a --accelerator-type=v5litepod-16 --spot --queued
    python scripts/tpu.py setup  --name=gan --zone=us-west4-a
    python scripts/tpu.py run    --name=gan --zone=us-west4-a --log=acgan.log -- \\
        python -m gan.main --config=configs/acgan.py --workdir=gs://BUCKET/runs/acgan
    python scripts/tpu.py logs   --name=gan --zone=us-west4-a --log=acgan.log --worker=0 --follow
    python scripts/tpu.py delete --name=gan --zone=us-west4-a --queued

Every subcommand takes --dry-run (print the exact commands, run nothing) and --project. A multi-host
slice runs the same command on every worker (--worker=all); `jax.distributed.initialize()` finds the
other workers by itself (common/run/cli.py calls it when TPU_WORKER_HOSTNAMES lists several hosts).
Runs are started with nohup, so they survive the ssh session; a preempted spot slice sends SIGTERM,
the run saves a checkpoint, and the same `run` command on a new slice resumes from the gs:// workdir.
"""

import argparse
import os
import shlex
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REMOTE_DIR = "~/jaxgan"      # the repository on every worker
REMOTE_VENV = "~/venv"
REMOTE_LOGS = "~/logs"
EXCLUDES = (".git", ".venv", "venv", "runs", "__pycache__", "*.egg-info", ".pytest_cache")


def gcloud(args, *cmd: str, alpha: bool = False) -> list[str]:
  base = ["gcloud"] + (["alpha"] if alpha else []) + list(cmd)
  return base + ([f"--project={args.project}"] if args.project else [])


def tpu_vm(args, verb: str, *rest: str) -> list[str]:
  return gcloud(args, "compute", "tpus", "tpu-vm", verb, *rest, f"--zone={args.zone}")


def ssh(args, command: str, worker: str = "all") -> list[str]:
  return tpu_vm(args, "ssh", args.name, f"--worker={worker}", f"--command={command}")


def create(args) -> list[list[str]]:
  if args.queued:  # waits in Cloud TPU's queue until capacity frees up, then creates the VM
    cmd = gcloud(args, "compute", "tpus", "queued-resources", "create", args.name, alpha=True)
    cmd += [f"--node-id={args.name}", f"--zone={args.zone}",
            f"--accelerator-type={args.accelerator_type}", f"--runtime-version={args.version}"]
  else:
    cmd = tpu_vm(args, "create", args.name, f"--accelerator-type={args.accelerator_type}",
                 f"--version={args.version}")
  if args.spot:
    cmd.append("--spot")
  return [cmd]


def install_command(python: str) -> str:
  """Unpacks the repo and installs it (with JAX's TPU runtime) into a venv on one worker."""
  get_python = (f"command -v {python} >/dev/null || (sudo apt-get update -qq && "
                f"sudo apt-get install -y -qq {python} {python}-venv)")
  return " && ".join([
      f"mkdir -p {REMOTE_DIR} {REMOTE_LOGS}",
      f"tar -xzf ~/jaxgan.tar.gz -C {REMOTE_DIR}",
      f"({get_python})",
      f"{python} -m venv {REMOTE_VENV}",
      f"{REMOTE_VENV}/bin/pip install -q -U pip",
      f"cd {REMOTE_DIR} && {REMOTE_VENV}/bin/pip install -q -e . 'jax[tpu]'",
  ])


def setup(args) -> list[list[str]]:
  tarball = f"/tmp/jaxgan-{args.name}.tar.gz"
  pack = ["tar", "-czf", tarball] + [f"--exclude={e}" for e in EXCLUDES] + ["-C", REPO, "."]
  copy = tpu_vm(args, "scp", tarball, f"{args.name}:~/jaxgan.tar.gz", "--worker=all")
  return [pack, copy, ssh(args, install_command(args.python))]


def remote_run_command(command: list[str], log: str, env: list[str], foreground: bool) -> str:
  """The shell line each worker runs: the repo's venv first on PATH, output to ~/logs/LOG."""
  exports = "".join(f"export {shlex.quote(e)} && " for e in env)
  prefix = (f"cd {REMOTE_DIR} && mkdir -p {REMOTE_LOGS} && export PATH=$HOME/venv/bin:$PATH && "
            + exports)
  line = shlex.join(command)
  if foreground:  # waits for the run; output both in the log and on this terminal
    return prefix + f"set -o pipefail && {line} 2>&1 | tee -a {REMOTE_LOGS}/{log}"
  return prefix + f"nohup {line} >> {REMOTE_LOGS}/{log} 2>&1 < /dev/null &"


def run(args) -> list[list[str]]:
  command = args.command[1:] if args.command[:1] == ["--"] else args.command
  if not command:
    raise SystemExit("Error: give the command after --, e.g. -- python -m gan.main --config=...")
  return [ssh(args, remote_run_command(command, args.log, args.env, args.foreground))]


def logs(args) -> list[list[str]]:
  follow = " -f" if args.follow else ""
  return [ssh(args, f"tail -n {args.lines}{follow} {REMOTE_LOGS}/{args.log}", worker=args.worker)]


def delete(args) -> list[list[str]]:
  if args.queued:  # --force also deletes the TPU VM the queued resource created
    return [gcloud(args, "compute", "tpus", "queued-resources", "delete", args.name,
                   f"--zone={args.zone}", "--force", "--quiet", alpha=True)]
  return [tpu_vm(args, "delete", args.name, "--quiet")]


def status(args) -> list[list[str]]:
  if args.queued:
    return [gcloud(args, "compute", "tpus", "queued-resources", "describe", args.name,
                   f"--zone={args.zone}", alpha=True)]
  return [tpu_vm(args, "describe", args.name)]


def parse(argv: list[str]) -> argparse.Namespace:
  common = argparse.ArgumentParser(add_help=False)
  common.add_argument("--name", required=True, help="TPU VM (and queued resource) name")
  common.add_argument("--zone", required=True, help="e.g. us-west4-a, us-central2-b")
  common.add_argument("--project", default=None, help="default: gcloud's configured project")
  common.add_argument("--dry-run", action="store_true", help="print the commands, run nothing")

  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  sub = parser.add_subparsers(dest="subcommand", required=True)
  p = sub.add_parser("create", parents=[common], help="create a TPU VM slice")
  p.add_argument("--accelerator-type", default="v5litepod-16")
  p.add_argument("--version", "--runtime-version", dest="version", default="tpu-ubuntu2204-base")
  p.add_argument("--spot", action="store_true", help="spot capacity: cheaper, preemptible")
  p.add_argument("--queued", action="store_true", help="request through queued resources")
  p.set_defaults(fn=create)
  p = sub.add_parser("setup", parents=[common], help="copy the repo to every worker, pip install")
  p.add_argument("--python", default="python3.11", help="the workers' Python (>= 3.11)")
  p.set_defaults(fn=setup)
  p = sub.add_parser("run", parents=[common], help="run a command on every worker (nohup)")
  p.add_argument("--log", default="run.log", help="log file name in ~/logs on each worker")
  p.add_argument("--env", action="append", default=[], metavar="KEY=VALUE")
  p.add_argument("--foreground", action="store_true", help="wait for the command to finish")
  p.add_argument("command", nargs=argparse.REMAINDER)
  p.set_defaults(fn=run)
  p = sub.add_parser("logs", parents=[common], help="tail a worker's log")
  p.add_argument("--log", default="run.log")
  p.add_argument("--worker", default="0")
  p.add_argument("--lines", type=int, default=100)
  p.add_argument("--follow", action="store_true")
  p.set_defaults(fn=logs)
  p = sub.add_parser("status", parents=[common], help="describe the VM or queued resource")
  p.add_argument("--queued", action="store_true")
  p.set_defaults(fn=status)
  p = sub.add_parser("delete", parents=[common], help="delete the VM (or queued resource)")
  p.add_argument("--queued", action="store_true")
  p.set_defaults(fn=delete)
  return parser.parse_args(argv)


def main(argv: list[str]) -> int:
  args = parse(argv)
  commands = args.fn(args)
  for cmd in commands:
    print(("" if args.dry_run else "+ ") + shlex.join(cmd), flush=True)
    if args.dry_run:
      continue
    try:
      rc = subprocess.call(cmd)
    except FileNotFoundError:
      print(f"Error: {cmd[0]} not found; install the Google Cloud CLI (gcloud) and log in.",
            file=sys.stderr)
      return 127
    if rc:
      print(f"Error: exit code {rc} from: {shlex.join(cmd)}", file=sys.stderr)
      return rc
  return 0


if __name__ == "__main__":
  sys.exit(main(sys.argv[1:]))
