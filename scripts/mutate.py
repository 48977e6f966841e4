"""Targeted mutation testing of the core: does each test selection catch the bug it names?

    python scripts/mutate.py                      # every mutation (see README, Tests)
    python scripts/mutate.py --only=loop-step-key,g-wasserstein-sign
    python scripts/mutate.py --list               # the mutations and their test selections

Each mutation replaces one piece of text in one module (it must occur there exactly once) in a
copy of the repository in a temporary folder, then runs the tests named beside it in that copy
(`python -m pytest -q -n 0 -x FILE... -k EXPR`, the copy first on PYTHONPATH, so subprocesses the
tests start run the mutated code too). A mutation is killed when those tests fail and survives
when they pass; each test selection is first run on an unmutated copy, and must pass. Prints one
line per mutation and the counts; exits 1 if any mutation survived or no longer applies (the code
changed under it: update its text here).

A hand-written list rather than mutmut or cosmic-ray: their thousands of generated mutants, each
run against the suite, would take days on 2 cores, while the bugs worth catching here (a key drawn
from the wrong counter, a sign, an axis, a mask, a lock's token) are few and each has a test
that should name it.
"""

import argparse
import dataclasses
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import time

REPO = pathlib.Path(__file__).resolve().parents[1]
IGNORE = shutil.ignore_patterns(".git", ".venv*", "runs", "__pycache__", "*.egg-info",
                                ".pytest_cache")


@dataclasses.dataclass(frozen=True)
class Mutation:
  name: str
  path: str              # the module, from the repository root
  old: str               # text found exactly once in it
  new: str
  tests: tuple[str, ...]  # pytest arguments: test files, and -k EXPR


STREAM = ("tests/test_streaming.py", "-k", "mid_epoch_resume")
LOSSES = ("tests/test_losses.py",)
METRICS = ("tests/test_metrics.py",)
EVAL = ("tests/test_evaluation.py", "-k", "one_device")
LOCK = ("tests/test_lock.py",)

MUTATIONS = (
    # The loop's keys and chunks.
    Mutation("loop-step-key", "common/run/loop.py", "fold_in(step_key, state.step)",
             "fold_in(step_key, i)", STREAM),
    Mutation("loop-epoch-shuffle", "common/data/shards.py",
             "epoch_permutation(jax.random.fold_in(k, e)",
             "epoch_permutation(jax.random.fold_in(k, 0)",
             STREAM),
    Mutation("loop-chunk-start", "common/run/loop.py", "start = state.step % steps_per_epoch",
             "start = jnp.int32(0)", STREAM),
    Mutation("loop-chunk-end", "common/run/loop.py", "min(a + chunk, steps_per_epoch)", "a + chunk",
             STREAM),
    Mutation("loop-stream-resume", "common/run/loop.py", "max(0, step - epoch * spe)", "0", STREAM),
    # Losses.
    Mutation("g-wasserstein-sign", "gan/losses.py", "  return -jnp.mean(fake)\n",
             "  return jnp.mean(fake)\n", LOSSES),
    Mutation("d-label-smoothing", "gan/losses.py", "bce(real, real_target)", "bce(real, 1.0)",
             LOSSES),
    Mutation("g-non-saturating-sign", "gan/losses.py", "softplus(-fake)", "softplus(fake)",
             LOSSES),
    Mutation("gp-interpolation", "gan/losses.py", "(1.0 - eps) * fake", "eps * fake", LOSSES),
    Mutation("aux-weights-swapped", "gan/step.py",
             "loss_config.aux_weight_real * aux_real + loss_config.aux_weight_fake * aux_fake",
             "loss_config.aux_weight_fake * aux_real + loss_config.aux_weight_real * aux_fake",
             LOSSES),
    Mutation("gp-weight-ignored", "gan/step.py", "loss + loss_config.gp_weight * shown[\"gp\"]",
             "loss + shown[\"gp\"]", LOSSES),
    # Metrics.
    Mutation("score-marginal-axis", "gan/metrics.py", "probs.mean(0, keepdims=True)",
             "probs.mean(1, keepdims=True)", METRICS),
    Mutation("knn-radius-k", "gan/metrics.py", "np.partition(d, k, axis=1)[:, k]",
             "np.partition(d, k - 1, axis=1)[:, k - 1]", METRICS),
    Mutation("precision-boundary", "gan/metrics.py", "fake, False, chunk)", "fake, True, chunk)",
             METRICS),
    Mutation("fd-cross-term", "gan/metrics.py", "- 2.0 * tr_covmean", "- tr_covmean", METRICS),
    Mutation("evaluation-real-fake-swapped", "gan/evaluation.py",
             "metrics.precision_recall(ref_feats, feats)",
             "metrics.precision_recall(feats, ref_feats)", METRICS),
    # Evaluation masks.
    Mutation("eval-loss-mask", "cnn/train.py", "jnp.sum(loss * mask)", "jnp.sum(loss)", EVAL),
    Mutation("eval-accuracy-mask", "cnn/train.py", "jnp.sum(correct * mask)", "jnp.sum(correct)",
             EVAL),
    Mutation("eval-divides-by-padded", "common/run/loop.py", "float(v) / split.num_examples",
             "float(v) / (split.per_shard * split.num_shards)", EVAL),
    Mutation("eval-pad-mask", "common/data/shards.py", "mask = np.arange(len(labels)) < n_proc",
             "mask = np.arange(len(labels)) <= n_proc", EVAL),
    # The lock.
    Mutation("lock-refresh-by-pid", "common/run/workdir_lock.py",
             'held.get("token") != self.record["token"]', 'held.get("pid") != self.record["pid"]',
             LOCK),
    Mutation("lock-release-unchecked", "common/run/workdir_lock.py",
             "_take_away(self.path, self.record)\n      return",
             "self.path.unlink()\n      return", LOCK),
    # Checkpoint fallback.
    Mutation("checkpoint-oldest-first", "common/run/checkpoint.py",
             "and (at_most is None or s <= at_most)), reverse=True)",
             "and (at_most is None or s <= at_most)), reverse=False)",
             ("tests/test_faults.py", "-k", "damaged_latest_checkpoint_falls_back")),
    Mutation("checkpoint-refuses-one-damaged", "common/run/checkpoint.py",
             "if damaged and len(damaged) == len(steps):", "if damaged:",
             ("tests/test_faults.py", "-k", "damaged_latest_checkpoint_falls_back")),
    # Data placement.
    Mutation("placement-per-process", "common/data/placement.py",
             "/ len(mesh.local_devices)\n", "\n",
             ("tests/test_streaming.py", "-k", "auto_placement")),
    Mutation("disk-workers-slices", "common/data/disk.py",
             "self.prefetch_steps // self.read_workers)))",
             "self.prefetch_steps // self.read_workers)), sequential_slice=True)",
             ("tests/test_streaming.py", "-k", "worker_processes")),
    # Kernel selection.
    Mutation("layers-fusion-ignored", "common/nn/layers.py",
             "if isinstance(following, MaxPool) and following.fuse_conv and isinstance(layer, Conv):",
             "if False:",
             ("tests/test_layers.py", "-k", "builders_fusions")),
)


def mutated(mutation: Mutation, root: pathlib.Path) -> str:
  """The mutated text of mutation.path under root; LookupError if `old` is not there once."""
  text = (root / mutation.path).read_text()
  if text.count(mutation.old) != 1:
    raise LookupError(f"{mutation.name}: {mutation.old!r} occurs {text.count(mutation.old)} "
                      f"times in {mutation.path}, not once; update the mutation.")
  return text.replace(mutation.old, mutation.new)


def run(tests: tuple[str, ...], mutation: Mutation | None, timeout: int) -> tuple[str, str]:
  """(outcome: 'killed', 'survived' or 'error', what decided it) of the tests in a fresh copy
  with the mutation applied (none: the code as it is)."""
  with tempfile.TemporaryDirectory(prefix="mutate-") as tmp:
    root = pathlib.Path(tmp) / "repo"
    shutil.copytree(REPO, root, ignore=IGNORE)
    if mutation is not None:
      (root / mutation.path).write_text(mutated(mutation, root))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(root)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]))
    cmd = [sys.executable, "-m", "pytest", "-q", "-n", "0", "-x", "-p", "no:cacheprovider",
           *tests]
    try:
      r = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
      return "killed", f"timed out after {timeout} s"
  failed = [l for l in r.stdout.splitlines() if l.startswith(("FAILED", "ERROR"))]
  if r.returncode == 0:
    return "survived", r.stdout.strip().splitlines()[-1]
  if r.returncode != 1:  # 2-5: interrupted, internal error, usage error, nothing collected
    return "error", (r.stdout + r.stderr).strip()[-500:]
  return "killed", failed[0] if failed else r.stdout.strip().splitlines()[-1]


def main() -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--only", default="", help="comma-separated mutation names")
  parser.add_argument("--list", action="store_true", help="list the mutations and exit")
  parser.add_argument("--timeout", type=int, default=900, help="seconds per mutation")
  args = parser.parse_args()
  chosen = [m for m in MUTATIONS if not args.only or m.name in args.only.split(",")]
  if args.list:
    for m in chosen:
      print(f"{m.name:32s} {m.path:24s} {' '.join(m.tests)}")
    return 0
  try:
    for m in chosen:  # every mutation still applies, before anything runs
      mutated(m, REPO)
  except LookupError as e:
    print(e, file=sys.stderr)
    return 1
  for tests in dict.fromkeys(m.tests for m in chosen):  # a kill counts only if they pass as is
    outcome, why = run(tests, None, args.timeout)
    if outcome != "survived":
      print(f"Without any mutation, {' '.join(tests)} does not pass ({why}); fix that first.",
            file=sys.stderr)
      return 1
  counts = {}
  for m in chosen:
    start = time.perf_counter()
    outcome, why = run(m.tests, m, args.timeout)
    counts[outcome] = counts.get(outcome, 0) + 1
    print(f"{outcome:8s} {m.name:32s} {time.perf_counter() - start:5.0f}s  {why}", flush=True)
  print(", ".join(f"{n} {k}" for k, n in sorted(counts.items())))
  return 0 if set(counts) <= {"killed"} else 1


if __name__ == "__main__":
  sys.exit(main())
