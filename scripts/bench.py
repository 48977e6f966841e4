"""Steady-state training throughput of a config, optionally against peer frameworks in the same run.

    python scripts/bench.py --config=configs/cnn_seed.py [--steps=375] [--repeats=3] [--json]
    python scripts/bench.py --config=configs/cnn_seed.py --peers=keras,torch --peer_python=PY
    python scripts/bench.py --config=configs/acgan.py --peers=keras,torch --peer_python=PY
    python scripts/bench.py --config=configs/cnn_seed.py --peers=torch --peer_variants=compiled
    python scripts/bench.py --config=configs/cnn_seed.py --placements=device,host
    python scripts/bench.py --config=configs/cnn_seed.py --config.data_dir=DIR \
        --placements=device,disk --reader_threads=1,2,16 --reader_workers=1,2

Times the same jitted chunk of steps that training runs (data on device, per-step batches gathered
by the epoch's permutation), after compiling it; compile time is reported separately. Peers are
scripts/peers/*_peer.py, run in a subprocess with --peer_python (their own virtual environment),
each framework in each of --peer_variants: eager (PyTorch eager; Keras with jit_compile=False) and
compiled (torch.compile with TorchInductor; Keras with jit_compile=True, XLA), --repeats times each,
interleaved. A peer row gives the median of its runs; the fastest peer is the variant with the
highest median, and "ours / fastest" is the median over the repeats of our i-th timed chunk's
throughput over that peer's i-th run's (the peers' compile time is reported apart, as ours is).
With --placements, runs whole epochs through the training loop instead, with the training split
held on device, streamed from host memory, or read from disk (a data_dir where the dataset is
prepared as array_record); --reader_threads (threads in this process) and --reader_workers
(grain worker processes, each with the first --reader_threads count) also time the reader alone. Prints a Markdown
table, or JSON with --json.

On CPU every row names the CPU (/proc/cpuinfo's model name) and whether it has avx2, avx512f,
amx_tile and amx_bf16. Each row also gives the epoch's time and XLA's FLOP count, and (unless
--noroofline) the device's matmul rate, measured in the same run (with its copy bandwidth, used to
report the epoch as a fraction of both). On a GPU the torch peer runs there (--peer_device), in
bfloat16 with --peer_bf16; its compiled variant uses torch.compile's max-autotune mode and
channels-last memory format.
scripts/gpu_bench.sh runs every GPU figure of BENCHMARKS.md in one go.
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

from common.data import placement as data  # pylint: disable=g-import-not-at-top,wrong-import-position
from common.run import loop  # pylint: disable=g-import-not-at-top,wrong-import-position
from common import parallel  # pylint: disable=g-import-not-at-top,wrong-import-position
from common.data import shards  # pylint: disable=g-import-not-at-top,wrong-import-position
from scripts.machine import CPU_FLAGS, cpu_info, device_limits  # pylint: disable=g-import-not-at-top,wrong-import-position

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "Config file to benchmark.")
flags.DEFINE_integer("steps", 0, "Steps per timed chunk (0: one epoch).")
flags.DEFINE_integer("repeats", 3, "Timed chunks; the median is reported.")
flags.DEFINE_bool("json", False, "Print JSON instead of a Markdown table.")
flags.DEFINE_list("peers", [], "Peer frameworks to run in the same run: keras, torch.")
flags.DEFINE_string("peer_python", os.environ.get("PEER_PYTHON", sys.executable),
                    "Python of the environment that has the peers' frameworks.")
flags.DEFINE_list("peer_variants", ["eager", "compiled"], "Variants of each peer framework: eager "
                  "(torch eager, Keras jit_compile=False), compiled (torch.compile, Keras "
                  "jit_compile=True).")
flags.DEFINE_integer("peer_epochs", 2, "Epochs (cnn) for each peer; the first is warm-up (with "
                     "1, the first step is).")
flags.DEFINE_integer("peer_steps", 30, "Timed steps (acgan) for each peer.")
flags.DEFINE_string("peer_device", "", "Device for the peers: cpu or cuda (default: cuda when "
                    "JAX runs on a GPU, else cpu).")
flags.DEFINE_bool("peer_bf16", False, "Peers compute in bfloat16 (torch.autocast).")
flags.DEFINE_bool("roofline", True, "Also measure the device's matmul rate and memory bandwidth "
                  "(about a second on CPU) and report the epoch against them.")
flags.DEFINE_list("reader_threads", [], "With --placements including disk: also time the disk "
                  "reader alone (grain, no training) with each of these thread counts.")
flags.DEFINE_list("reader_workers", [], "And with each of these grain worker process counts "
                  "(each running the first --reader_threads count of threads, default 16).")
flags.DEFINE_list("placements", [], "Instead: whole epochs through the training loop with the "
                  "training split in each placement (device, host); ratios to the first.")

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PEER_MODELS = {"cnn_seed": "cnn_seed", "acgan": "acgan"}
PEER_VARIANT_ARGS = {("torch", "eager"): [], ("torch", "compiled"): ["--compile"],
                     ("keras", "eager"): ["--variant=eager"],
                     ("keras", "compiled"): ["--variant=compiled"]}
def is_gan(config) -> bool:
  return "loss" in config


def _prepare(config, workdir: str):
  """(task, splits, mesh) of either model family, as its train_and_evaluate builds them."""
  if is_gan(config):
    from gan import options, train  # pylint: disable=g-import-not-at-top
    options.validate(config)
    task, _, splits, mesh, _ = train.prepare(config, workdir)
    return task, {"train": splits["train"]}, mesh
  from cnn import options, train  # pylint: disable=g-import-not-at-top
  options.validate(config)
  task, _, splits, mesh = train.prepare(config, workdir)
  return task, splits, mesh


def _row(framework: str, config, steps: int, examples_per_sec: float, compile_s: float,
         batches_per_step: int) -> dict:
  """One table row: throughput, compile time, peak memory and the device."""
  stats = jax.devices()[0].memory_stats() or {}
  row = {
      "framework": framework, "config": config.name, "batch": config.batch_size, "steps": steps,
      "ms_per_step": 1e3 * config.batch_size * batches_per_step / examples_per_sec,
      "examples_per_sec": examples_per_sec, "compile_s": compile_s,
      "peak_host_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
      "peak_device_mb": stats.get("peak_bytes_in_use", 0) / 2**20 or None,
      "device": jax.devices()[0].device_kind, "devices": jax.device_count(),
  }
  if jax.default_backend() == "cpu":
    row.update(cpu_info())
  return row


def measure(config) -> dict:
  """Compile time and steady-state throughput of config's training chunk on this machine."""
  task, splits, mesh = _prepare(config, "/tmp/bench_unused")
  split = splits["train"]
  spe = shards.steps_per_epoch(split, config.batch_size, task.batches_per_step)
  steps = min(FLAGS.steps or spe, spe)
  chunk = loop.make_train_chunk(task, spe, config.batch_size // mesh.size)
  per_step = task.batches_per_step * config.batch_size // mesh.size
  rows = lambda: next(split.chunks(mesh, jax.random.PRNGKey(0), iter([(0, 0, steps)]), steps,  # pylint: disable=g-long-lambda
                                   per_step))  # the epoch's rows, gathered as the loop does
  state = jax.device_put(task.init(jax.random.PRNGKey(0)), jax.sharding.NamedSharding(
      mesh, jax.sharding.PartitionSpec()))
  like = jax.eval_shape(task.train_step, state, loop.batch_like(task, split, config.batch_size),
                        jax.random.PRNGKey(0))[1]
  zeros = lambda: jax.tree.map(lambda s: jnp.zeros(s.shape, jnp.float32), like)  # pylint: disable=g-long-lambda
  t0 = time.perf_counter()
  compiled = chunk.lower(state, rows(), jnp.int32(steps), zeros()).compile()
  compile_s = time.perf_counter() - t0
  cost = step_cost(task, state, split, config.batch_size)
  state, sums, _ = compiled(state, rows(), jnp.int32(steps), zeros())  # warm-up
  jax.block_until_ready(sums)
  times = []
  for _ in range(FLAGS.repeats):
    state = state.replace(step=jnp.zeros_like(state.step))
    t0 = time.perf_counter()
    state, sums, _ = compiled(state, rows(), jnp.int32(steps), zeros())
    jax.block_until_ready(sums)
    times.append(time.perf_counter() - t0)
  images = steps * config.batch_size * task.batches_per_step
  row = _row(f"jax {jax.__version__}", config, steps, images / float(np.median(times)),
             compile_s, task.batches_per_step)
  row["examples_per_sec_runs"] = [images / t for t in times]  # paired with the peers' repeats
  row["epoch_s"] = row["ms_per_step"] * spe / 1e3
  row.update({f"{k}_per_epoch": v * spe for k, v in cost.items()})
  return row


def step_cost(task, state, split, global_batch: int) -> dict:
  """XLA's count of one training step's FLOPs (before fusion: every dot and convolution) and
  bytes accessed (after fusion, as it runs)."""
  batch = loop.batch_like(task, split, global_batch)
  args = (state, batch, jax.random.PRNGKey(0))
  lowered = jax.jit(task.train_step).lower(*args)
  first = lambda c: (c[0] if c else {}) if isinstance(c, list) else (c or {})  # pylint: disable=g-long-lambda
  flops = first(lowered.cost_analysis()).get("flops", 0.0)
  if not flops:  # XLA:GPU counts none here (measured, jax 0.11.2): count the same program for CPU
    abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), args)
    flops = first(jax.jit(task.train_step).trace(*abstract).lower(
        lowering_platforms=("cpu",)).cost_analysis()).get("flops", 0.0)
  return {"flops": float(flops),
          "bytes": float(first(lowered.compile().cost_analysis()).get("bytes accessed", 0.0))}


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
    _, results = loop.run(config, workdir, task, splits, mesh)
    epochs = [json.loads(l) for l in open(os.path.join(workdir, "metrics.jsonl"))]
  per_sec = float(np.median([e["examples_per_sec"] for e in epochs[1:]]))
  steps = shards.steps_per_epoch(splits["train"], config.batch_size, task.batches_per_step)
  return _row(f"jax {jax.__version__}, data on {placement}", config, steps, per_sec,
              results["compile_time_s"], task.batches_per_step)


def measure_reader(config, threads: int, workers: int = 0) -> dict:
  """The disk reader alone: examples/s that grain's `threads` threads (in `workers` processes, if
  any) deliver to the host.

  Epochs of host chunks (16 steps each) with no training; the median of epochs 2..1+repeats.
  """
  config = config.copy_and_resolve_references()
  config.data_placement, config.read_threads, config.read_workers = "disk", threads, workers
  mesh = parallel.make_mesh()
  _, splits = data.load(config, mesh, train_batch=config.batch_size,
                        eval_batch=config.eval_batch_size)
  split, per_shard_batch = splits["train"], config.batch_size // mesh.size
  steps = shards.steps_per_epoch(split, config.batch_size)
  seconds = []
  for epoch in range(1 + FLAGS.repeats):
    chunks = ((epoch, a, min(a + 16, steps)) for a in range(0, steps, 16))
    start = time.perf_counter()
    for _ in split.host_chunks(jax.random.PRNGKey(0), chunks, 16, per_shard_batch):
      pass
    seconds.append(time.perf_counter() - start)
  per_sec = steps * config.batch_size / float(np.median(seconds[1:]))
  where = f" in each of {workers} worker processes" if workers else ""
  return _row(f"disk reader alone, {threads} grain threads{where} (no training)", config, steps,
              per_sec, 0.0, 1)


def run_peer(framework: str, model: str, config, variant: str = "eager") -> dict:
  """One run of a peer script in a subprocess: its JSON line, or a row with "error"."""
  script = os.path.join(REPO, "scripts", "peers", f"{framework}_peer.py")
  args = [FLAGS.peer_python, script, f"--model={model}", "--json", f"--batch={config.batch_size}"]
  args += PEER_VARIANT_ARGS[(framework, variant)]
  if framework == "torch":
    gpu = jax.default_backend() == "gpu"
    args += [f"--device={FLAGS.peer_device or ('cuda' if gpu else 'cpu')}"]
    args += ["--bf16"] if FLAGS.peer_bf16 else []
  if model == "cnn_seed":
    args += [f"--epochs={FLAGS.peer_epochs}"]
    args += [f"--steps={FLAGS.steps}"] if FLAGS.steps else []  # the same steps as our timed chunk
  else:  # our step updates G on one batch of fresh noise, so the peers do the same work
    args += [f"--steps={FLAGS.peer_steps}", f"--gen_batch={config.batch_size}"]
  r = subprocess.run(args, capture_output=True, text=True, cwd=REPO, check=False, env=PEER_ENV)
  lines = [l for l in r.stdout.splitlines() if l.startswith("{")]
  row = json.loads(lines[-1]) if lines else {}
  row.setdefault("framework", f"{framework} {variant}")
  row["peer_variant"] = variant
  if r.returncode or not lines or "error" in row:
    row.setdefault("error", " ".join((r.stderr or r.stdout).strip().splitlines()[-1:]))
  if row.get("device", "cpu") == "cpu":
    row.update(cpu_info())
  return row


def peer_label(r: dict) -> str:
  """A peer row's name: its framework, and its variant where that says more (Keras: fit, ...)."""
  v = r.get("variant")
  return r["framework"] + (f" [{v}]" if v not in (None, "eager", "compiled") else "")


def summarize_peer(runs: list) -> dict:
  """One row for the repeats of one peer variant: the run of median throughput, with the median
  throughput, step time and compile time of the runs, and every run's throughput."""
  ok = [r for r in runs if "examples_per_sec" in r and "error" not in r]
  if not ok:
    return runs[0]
  def med(k):
    return float(np.median([r[k] for r in ok if r.get(k) is not None] or [np.nan]))
  by_speed = sorted(ok, key=lambda r: r["examples_per_sec"])
  row = dict(by_speed[(len(ok) - 1) // 2])
  row.update(examples_per_sec=med("examples_per_sec"), ms_per_step=med("ms_per_step"),
             compile_s=med("compile_s"), runs=len(ok),
             examples_per_sec_runs=[r["examples_per_sec"] for r in ok])
  if len(ok) < len(runs):
    row["failed_runs"] = [r.get("error") for r in runs if r not in ok]
  return row


def ratio_to(ours: dict, peer: dict) -> float:
  """Median over the repeats of ours' i-th throughput over the peer's i-th."""
  pairs = zip(ours.get("examples_per_sec_runs", [ours["examples_per_sec"]]),
              peer.get("examples_per_sec_runs", [peer["examples_per_sec"]]))
  return float(np.median([o / p for o, p in pairs]))


def run_peers(model: str, config) -> list:
  """Every framework in --peers in every --peer_variants, --repeats times each (interleaved, so
  that a slow minute on a shared machine hits all of them); one summarized row per variant."""
  variants = [(fw, v) for fw in FLAGS.peers for v in FLAGS.peer_variants]
  unknown = [k for k in variants if k not in PEER_VARIANT_ARGS]
  if unknown:
    raise SystemExit(f"Error: unknown peer or variant {unknown}; peers: keras, torch; variants: "
                     "eager, compiled.")
  runs = {k: [] for k in variants}
  for _ in range(max(1, FLAGS.repeats)):
    for fw, v in variants:
      runs[(fw, v)].append(run_peer(fw, model, config, v))
  return [summarize_peer(runs[k]) for k in variants]


def placement_rows(config) -> list:
  """--placements: one row per placement and reader thread count, as a ratio to the first."""
  rows = [measure_placement(config, p) for p in FLAGS.placements]
  rows += [measure_reader(config, int(t)) for t in FLAGS.reader_threads]
  threads = int(FLAGS.reader_threads[0]) if FLAGS.reader_threads else 16
  rows += [measure_reader(config, threads, int(w)) for w in FLAGS.reader_workers]
  rows[0]["ratio"] = 1.0
  for r in rows[1:]:
    r["ratio"] = r["examples_per_sec"] / rows[0]["examples_per_sec"]
  return rows


def speed_rows(config) -> list:
  """Ours, then each --peers variant with its ratio; the fastest peer named in our row."""
  model = config.name.split("_cpu")[0].split("_test")[0]
  if FLAGS.peers and model not in PEER_MODELS:
    raise SystemExit(f"Error: no peer script for {config.name}; peers exist for "
                     f"{', '.join(PEER_MODELS)}.")
  peers = run_peers(PEER_MODELS[model], config) if FLAGS.peers else []  # first, while we idle
  rows = [measure(config)] + peers
  ok = [r for r in peers if "examples_per_sec" in r and "error" not in r]
  for r in ok:
    r["ours_over_this"] = ratio_to(rows[0], r)
  if ok:
    best = max(ok, key=lambda r: r["examples_per_sec"])
    rows[0]["fastest_peer"] = peer_label(best)
    rows[0]["ratio_to_fastest_peer"] = best["ours_over_this"]
    rows[0]["ratio_repeats"] = min(len(rows[0]["examples_per_sec_runs"]), best["runs"])
  return rows


def machine_meta(rows: list) -> dict:
  """The machine, date and versions; with --roofline, the device's measured limits too."""
  meta = {"machine": f"{platform.node()} {platform.processor() or platform.machine()}, "
                     f"{os.cpu_count()} cpus", "date": time.strftime("%Y-%m-%d"),
          "jax": jax.__version__, "backend": jax.default_backend(), **cpu_info()}
  if FLAGS.roofline and not FLAGS.placements and rows[0].get("flops_per_epoch"):
    limits = device_limits()
    meta.update(limits)
    for r in rows:  # the same machine's rate, measured now
      if "error" not in r:
        r.update(matmul_flops_per_s=limits["matmul_flops_per_s"], matmul=limits["matmul"])
    r = rows[0]
    r["flops_fraction"] = r["flops_per_epoch"] / limits["matmul_flops_per_s"] / r["epoch_s"]
    r["bytes_fraction"] = r["bytes_per_epoch"] / limits["bytes_per_s"] / r["epoch_s"]
  return meta


def peer_summary(rows: list) -> str | None:
  if "ratio_to_fastest_peer" in rows[0]:
    return (f"fastest peer: {rows[0]['fastest_peer']} ; ours / fastest = "
            f"{rows[0]['ratio_to_fastest_peer']:.2f}x (median of {rows[0]['ratio_repeats']})")
  return "fastest peer: none (every peer run failed)" if FLAGS.peers else None


def print_table(meta: dict, rows: list, summary: str | None) -> None:
  print(f"{meta['date']}, {meta['machine']}, device {rows[0]['device']} x{rows[0]['devices']}")
  has = [f for f, v in meta["cpu_flags"].items() if v]
  lacks = [f for f, v in meta["cpu_flags"].items() if not v]
  print(f"CPU: {meta['cpu_model']} ({', '.join(has) or 'none of ' + ', '.join(CPU_FLAGS)}"
        f"{'; no ' + ', '.join(lacks) if has and lacks else ''})")
  ratio_head = "ours / this (median)" if FLAGS.peers else "ratio"
  print(f"| framework | config | batch | ms/step | examples/s | compile s | runs | {ratio_head} |")
  print("|---|---|---|---|---|---|---|---|")
  for r in rows:
    name = peer_label(r)
    if "error" in r:
      print(f"| {name} | error: {r['error']} | | | | | | |")
      continue
    ratio = r.get("ratio", r.get("ours_over_this", r.get("ratio_to_fastest_peer")))
    runs = r.get("runs", len(r.get("examples_per_sec_runs", [])) or "")
    print(f"| {name} | {r.get('config', r.get('model'))} | {r.get('batch', '')} | "
          f"{r['ms_per_step']:.2f} | {r['examples_per_sec']:,.0f} | "
          f"{r.get('compile_s', float('nan')):.1f} | {runs} | "
          f"{'' if ratio is None else f'{ratio:.2f}'} |")
    if r.get("note"):
      print(f"|  note: {r['note']} | | | | | | | |")
  if summary:
    print(f"\n{summary}")


def print_roofline(meta: dict, r: dict) -> None:
  if "epoch_s" in r:
    print(f"\nOne epoch ({r['epoch_s']:.3f} s): {r['flops_per_epoch'] / 1e12:.3f} TFLOP, "
          f"{r['bytes_per_epoch'] / 1e9:.2f} GB accessed (XLA's cost analysis of one step).")
  if "flops_fraction" in r:
    print(f"Device: {meta['matmul_flops_per_s'] / 1e12:.2f} TFLOP/s ({meta['matmul']} matmul), "
          f"{meta['bytes_per_s'] / 1e9:.0f} GB/s copy (measured now). The epoch's FLOPs run at "
          f"{100 * r['flops_fraction']:.1f}% of that matmul rate. XLA's bytes-accessed count "
          f"would take {100 * r['bytes_fraction']:.0f}% of the epoch at the copy rate: an upper "
          f"bound on memory traffic (it counts operands that caches serve).")


def main(argv):
  del argv
  config = FLAGS.config
  rows = placement_rows(config) if FLAGS.placements else speed_rows(config)
  meta = machine_meta(rows)
  summary = peer_summary(rows)
  if FLAGS.json:
    print(json.dumps({"meta": meta, "rows": rows, **({"summary": summary} if summary else {})},
                     indent=1))
    return
  print_table(meta, rows, summary)
  print_roofline(meta, rows[0])


if __name__ == "__main__":
  app.run(main)
