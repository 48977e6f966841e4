"""Feature-extraction throughput of the Inception metrics: images per second of our extractor
(gan/inception.py: uint8 images -> resize to 299 -> pool3 and logits on the host, jitted and
sharded over every device) against pytorch-fid's model on the same machine, same run, same batch.

    python scripts/bench_inception.py [--images=2000] [--batch=200] [--size=32] [--repeats=3] \
        [--peer_python=PY] [--peer_device=cpu|cuda] [--json]

Weights: gan.inception_weights.random_state_dict (speed does not depend on the values), written
once as a .pth for the peer (scripts/peers/fid_peer.py, run with --peer_python: an environment
with torch and pytorch-fid; '' skips it). Images: seeded uint8, --size x --size x 3 (CIFAR-sized
by default). Both sides time whole passes over the images after a warm-up pass (ours: compile),
host -> device -> host included, float32 at the highest matmul precision; the median of
--repeats passes is reported, with the ratio of the medians.
"""

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np
from absl import app, flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # pylint: disable=g-import-not-at-top,wrong-import-position
from common import parallel  # pylint: disable=g-import-not-at-top,wrong-import-position
from gan import inception  # pylint: disable=g-import-not-at-top,wrong-import-position
from gan import inception_weights  # pylint: disable=g-import-not-at-top,wrong-import-position
from scripts.machine import cpu_info, device_limits  # pylint: disable=g-import-not-at-top,wrong-import-position

FLAGS = flags.FLAGS
flags.DEFINE_integer("images", 2000, "Images per timed pass.")
flags.DEFINE_integer("batch", 200, "Images per batch, both sides.")
flags.DEFINE_integer("size", 32, "Side of the square RGB input images.")
flags.DEFINE_integer("repeats", 3, "Timed passes; the median is reported.")
flags.DEFINE_enum("resize", "pytorch_fid", list(inception.RESIZES), "Our resize convention.")
flags.DEFINE_string("peer_python", os.environ.get("PEER_PYTHON", ""),
                    "Python of an environment with torch and pytorch-fid ('': no peer).")
flags.DEFINE_string("peer_device", "", "cpu or cuda (default: cuda when JAX runs on a GPU).")
flags.DEFINE_bool("json", False, "Print JSON instead of a Markdown table.")

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def measure_ours(params, images: np.ndarray) -> dict:
  extract = inception.Extractor(params, parallel.make_mesh(), FLAGS.resize, FLAGS.batch)
  start = time.perf_counter()
  extract(images)
  first = time.perf_counter() - start
  times = []
  for _ in range(FLAGS.repeats):
    start = time.perf_counter()
    extract(images)
    times.append(time.perf_counter() - start)
  device = jax.devices()[0]
  return {"framework": f"ours (jax {jax.__version__}, {FLAGS.resize})",
          "device": f"{device.platform} {device.device_kind}", "devices": jax.device_count(),
          "batch": FLAGS.batch, "images": len(images), "first_pass_s": first,
          "images_per_sec": len(images) / statistics.median(times),
          "images_per_sec_runs": [len(images) / t for t in times]}


def measure_peer(weights: str, images_file: str) -> dict:
  device = FLAGS.peer_device or ("cuda" if jax.default_backend() == "gpu" else "cpu")
  args = [FLAGS.peer_python, os.path.join(REPO, "scripts", "peers", "fid_peer.py"),
          f"--weights={weights}", f"--images={images_file}", f"--batch={FLAGS.batch}",
          f"--device={device}", f"--repeats={FLAGS.repeats}"]
  r = subprocess.run(args, capture_output=True, text=True, check=False)
  lines = [l for l in r.stdout.splitlines() if l.startswith("{")]
  if r.returncode or not lines:
    return {"framework": "pytorch-fid", "error": " ".join(r.stderr.strip().splitlines()[-1:])}
  return json.loads(lines[-1])


def main(argv):
  del argv
  jax.config.update("jax_default_matmul_precision", "highest")
  state = inception_weights.random_state_dict(0)
  images = np.random.default_rng(0).integers(0, 256, (FLAGS.images, FLAGS.size, FLAGS.size, 3),
                                             dtype=np.uint8)
  rows = [measure_ours(inception_weights.to_params(state), images)]
  if FLAGS.peer_python:
    with tempfile.TemporaryDirectory() as tmp:
      weights, images_file = os.path.join(tmp, "w.pth"), os.path.join(tmp, "images.npy")
      inception_weights.save_state_dict(weights, state)
      np.save(images_file, images)
      rows.append(measure_peer(weights, images_file))
  if "images_per_sec" in rows[-1] and len(rows) == 2:
    rows[0]["ours_over_peer"] = rows[0]["images_per_sec"] / rows[1]["images_per_sec"]
  limits = device_limits()
  meta = {"date": time.strftime("%Y-%m-%d"), "jax": jax.__version__, **cpu_info(),
          "matmul_flops_per_s": limits["matmul_flops_per_s"], "matmul": limits["matmul"]}
  if FLAGS.json:
    print(json.dumps({"meta": meta, "rows": rows}))
    return
  print(f"{meta['date']}, CPU: {meta['cpu_model']}, {os.cpu_count()} cpus; matmul "
        f"{meta['matmul_flops_per_s'] / 1e9:.0f} GFLOP/s ({meta['matmul']}, measured now)")
  print("| framework | device | batch | images/s | first pass (s) | ours / peer |")
  print("| --- | --- | --- | --- | --- | --- |")
  for r in rows:
    if "error" in r:
      print(f"| {r['framework']} | error: {r['error']} | | | | |")
      continue
    ratio = f"{r['ours_over_peer']:.2f}x" if "ours_over_peer" in r else ""
    print(f"| {r['framework']} | {r['device']} | {r['batch']} | {r['images_per_sec']:.1f} | "
          f"{r['first_pass_s']:.1f} | {ratio} |")


if __name__ == "__main__":
  app.run(main)
