"""Runs one CNN training in this process and prints its peak RSS growth as JSON (for test_disk).

    python tests/rss_run.py WORKDIR key=value ...   # config overrides of configs/cnn_seed.py:test
"""

import json
import os
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# In the baseline: TensorFlow (TFDS imports it on first use) and the JAX backend.
import jax  # pylint: disable=g-import-not-at-top
import tensorflow  # pylint: disable=unused-import,g-import-not-at-top
from cnn import train  # pylint: disable=g-import-not-at-top
from configs import cnn_seed  # pylint: disable=g-import-not-at-top


def rss() -> int:
  with open("/proc/self/statm") as f:
    return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def main():
  workdir, overrides = sys.argv[1], sys.argv[2:]
  config = cnn_seed.get_config("test")
  for item in overrides:
    key, value = item.split("=", 1)
    config[key] = type(config[key])(value)
  jax.devices()
  peak, baseline, done = [0], rss(), threading.Event()

  def sample():
    while not done.is_set():
      peak[0] = max(peak[0], rss())
      time.sleep(0.002)

  sampler = threading.Thread(target=sample, daemon=True)
  sampler.start()
  _, results = train.train_and_evaluate(config, workdir)
  done.set()
  sampler.join()
  print(json.dumps({"baseline": baseline, "peak": peak[0], "growth": peak[0] - baseline,
                    "step": results["step"], "accuracy": results["test"]["accuracy"]}))


if __name__ == "__main__":
  main()
