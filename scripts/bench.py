"""Steady-state training throughput of a config, optionally against peer frameworks in the same run.

    python scripts/bench.py --config=configs/cnn_seed.py [--steps=375] [--repeats=3] [--json]
    python scripts/bench.py --config=configs/cnn_seed.py --peers=keras,torch --peer_python=PY
    python scripts/bench.py --config=configs/acgan.py --peers=keras,torch --peer_python=PY
    python scripts/bench.py --config=configs/cnn_seed.py --placements=device,host

Times the same jitted chunk of steps that training runs (data on device, per-step batches gathered
by the epoch's permutation), after compiling it; compile time is reported separately. Peers are
scripts/peers/*_peer.py, run in a subprocess with --peer_python (their own virtual environment).
With --placements, runs whole epochs through the training loop instead, once with the training
split held on device and once streamed from the host. Prints a Markdown table, or JSON with --json.
"""

import os

# The peers get the environment this process started with: importing `common` sets
# TF_ENABLE_ONEDNN_OPTS=0 here, which halves the Keras peer's speed when inherited.
PEER_ENV = dict(os.environ)

import dataclasses  # pylint: disable=g-import-not-at-top,wrong-import-position,wrong-import-order
import json  # pylint: disable=g-import-not-at-top,wrong-import-position,wrong-import-order
import platform
import resource
import subprocess
import sys
import tempfile
import time

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags
from ml_collections import config_flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from common import data as data_lib  # pylint: disable=g-import-not-at-top,wrong-import-position
from common import loop  # pylint: disable=g-import-not-at-top,wrong-import-position

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "Config file to benchmark.")
flags.DEFINE_integer("steps", 0, "Steps per timed chunk (0: one epoch).")
flags.DEFINE_integer("repeats", 3, "Timed chunks; the median is reported.")
flags.DEFINE_bool("json", False, "Print JSON instead of a Markdown table.")
flags.DEFINE_list("peers", [], "Peer frameworks to run in the same run: keras, torch.")
flags.DEFINE_string("peer_python", os.environ.get("PEER_PYTHON", sys.executable),
                    "Python of the environment that has the peers' frameworks.")
flags.DEFINE_integer("peer_epochs", 2, "Epochs (cnn) for each peer; the first is warm-up.")
flags.DEFINE_integer("peer_steps", 30, "Timed steps (acgan) for each peer.")
flags.DEFINE_list("placements", [], "Instead: whole epochs through the training loop with the "
                  "training split in each placement (device, host); ratios to the first.")

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PEER_MODELS = {"cnn_seed": "cnn_seed", "acgan": "acgan"}


def is_gan(config) -> bool:
  return "loss" in config


def _prepare(config, workdir: str):
  """(task, splits, mesh) of either model family, as its train_and_evaluate builds them."""
  if is_gan(config):
    from gan import train  # pylint: disable=g-import-not-at-top
    task, splits, mesh, _ = train.prepare(config, workdir)
    return task, {"train": splits["train"]}, mesh
  from cnn import train  # pylint: disable=g-import-not-at-top
  return train.prepare(config, workdir)


def _row(framework: str, config, steps: int, examples_per_sec: float, compile_s: float,
         batches_per_step: int) -> dict:
  """One table row: throughput, compile time, peak memory and the device."""
  stats = jax.devices()[0].memory_stats() or {}
  return {
      "framework": framework, "config": config.name, "batch": config.batch_size, "steps": steps,
      "ms_per_step": 1e3 * config.batch_size * batches_per_step / examples_per_sec,
      "examples_per_sec": examples_per_sec, "compile_s": compile_s,
      "peak_host_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
      "peak_device_mb": stats.get("peak_bytes_in_use", 0) / 2**20 or None,
      "device": jax.devices()[0].device_kind, "devices": jax.device_count(),
  }


def measure(config) -> dict:
  """Compile time and steady-state throughput of config's training chunk on this machine."""
  task, splits, mesh = _prepare(config, "/tmp/bench_unused")
  split = splits["train"]
  spe = data_lib.steps_per_epoch(split, config.batch_size, task.batches_per_step)
  steps = min(FLAGS.steps or spe, spe)
  chunk = loop.make_train_chunk(task, spe, config.batch_size // mesh.size)
  state = jax.device_put(task.init(jax.random.PRNGKey(0)), jax.sharding.NamedSharding(
      mesh, jax.sharding.PartitionSpec()))
  like = jax.eval_shape(task.train_step, state, loop.batch_like(task, split, config.batch_size),
                        jax.random.PRNGKey(0))[1]
  zeros = lambda: jax.tree.map(lambda s: jnp.zeros(s.shape, jnp.float32), like)  # pylint: disable=g-long-lambda
  t0 = time.perf_counter()
  compiled = chunk.lower(state, split, jnp.int32(steps), zeros()).compile()
  compile_s = time.perf_counter() - t0
  state, sums, _ = compiled(state, split, jnp.int32(steps), zeros())  # warm-up
  jax.block_until_ready(sums)
  times = []
  for _ in range(FLAGS.repeats):
    state = state.replace(step=jnp.zeros_like(state.step))
    t0 = time.perf_counter()
    state, sums, _ = compiled(state, split, jnp.int32(steps), zeros())
    jax.block_until_ready(sums)
    times.append(time.perf_counter() - t0)
  images = steps * config.batch_size * task.batches_per_step
  return _row(f"jax {jax.__version__}", config, steps, images / float(np.median(times)),
              compile_s, task.batches_per_step)


def measure_placement(config, placement: str) -> dict:
  """Whole epochs through the training loop with the training split on device or streamed.

  1 + --repeats epochs; the median of epochs 2.. (the loop's own timing, evaluation excluded).
  """
  config = config.copy_and_resolve_references()
  config.data_placement, config.num_epochs, config.progress_bar = placement, 1 + FLAGS.repeats, "off"
  config.eval_every_epochs = config.checkpoint_every_epochs = 10**6
  with tempfile.TemporaryDirectory() as workdir:
    task, splits, mesh = _prepare(config, workdir)
    task = dataclasses.replace(task, on_epoch_end=None, finish=None)
    results = loop.run(config, workdir, task, splits, mesh)
    epochs = [json.loads(l) for l in open(os.path.join(workdir, "metrics.jsonl"))]
  per_sec = float(np.median([e["examples_per_sec"] for e in epochs[1:]]))
  steps = data_lib.steps_per_epoch(splits["train"], config.batch_size, task.batches_per_step)
  return _row(f"jax {jax.__version__}, data on {placement}", config, steps, per_sec,
              results["compile_time_s"], task.batches_per_step)


def run_peer(framework: str, model: str, config) -> dict:
  script = os.path.join(REPO, "scripts", "peers", f"{framework}_peer.py")
  args = [FLAGS.peer_python, script, f"--model={model}", "--json", f"--batch={config.batch_size}"]
  if model == "cnn_seed":
    args += [f"--epochs={FLAGS.peer_epochs}"]
  else:  # our step updates G on one batch of fresh noise, so the peers do the same work
    args += [f"--steps={FLAGS.peer_steps}", f"--gen_batch={config.batch_size}"]
  r = subprocess.run(args, capture_output=True, text=True, cwd=REPO, check=False, env=PEER_ENV)
  lines = [l for l in r.stdout.splitlines() if l.startswith("{")]
  if r.returncode or not lines:
    return {"framework": framework, "error": (r.stderr or r.stdout).strip().splitlines()[-1:]}
  return json.loads(lines[-1])


def main(argv):
  del argv
  config = FLAGS.config
  if FLAGS.placements:
    rows = [measure_placement(config, p) for p in FLAGS.placements]
    rows[0]["ratio"] = 1.0
    for r in rows[1:]:
      r["ratio"] = r["examples_per_sec"] / rows[0]["examples_per_sec"]
  else:
    # Peers first, while this process is idle.
    model = config.name.split("_cpu")[0].split("_test")[0]
    if FLAGS.peers and model not in PEER_MODELS:
      raise SystemExit(f"Error: no peer script for {config.name}; peers exist for "
                       f"{', '.join(PEER_MODELS)}.")
    peers = [run_peer(peer, PEER_MODELS[model], config) for peer in FLAGS.peers]
    rows = [measure(config)] + peers
    ok = [r for r in peers if "examples_per_sec" in r]
    if ok:
      best = max(ok, key=lambda r: r["examples_per_sec"])
      rows[0]["ratio_to_fastest_peer"] = rows[0]["examples_per_sec"] / best["examples_per_sec"]
  meta = {"machine": f"{platform.node()} {platform.processor() or platform.machine()}, "
                     f"{os.cpu_count()} cpus", "date": time.strftime("%Y-%m-%d")}
  if FLAGS.json:
    print(json.dumps({"meta": meta, "rows": rows}, indent=1))
    return
  print(f"{meta['date']}, {meta['machine']}, device {rows[0]['device']} x{rows[0]['devices']}")
  print("| framework | config | batch | ms/step | examples/s | compile s | ratio |")
  print("|---|---|---|---|---|---|---|")
  for r in rows:
    if "error" in r:
      print(f"| {r['framework']} | error: {r['error']} | | | | | |")
      continue
    print(f"| {r['framework']} | {r.get('config', r.get('model'))} | {r.get('batch', '')} | "
          f"{r['ms_per_step']:.2f} | {r['examples_per_sec']:,.0f} | "
          f"{r.get('compile_s', float('nan')):.1f} | "
          f"{r.get('ratio', r.get('ratio_to_fastest_peer', 1.0)):.2f} |")


if __name__ == "__main__":
  app.run(main)
