"""Runs one CNN training in this process and prints, as JSON, the peak of the memory that Python
and numpy allocate during it (for test_disk).

    python tests/memory_run.py WORKDIR key=value ...   # config overrides of configs/cnn_seed.py:test

tracemalloc sees every Python object and numpy array, which is where TFDS and grain put the
examples they read, and not XLA's compiler, whose peaks made process RSS vary by +-50 MB from run
to run.
"""

import json
import os
import sys
import tracemalloc

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# Imported before tracing starts: TensorFlow (TFDS imports it on first use) and the JAX backend.
import jax  # pylint: disable=g-import-not-at-top
import tensorflow  # pylint: disable=unused-import,g-import-not-at-top
import tensorflow_datasets  # pylint: disable=unused-import,g-import-not-at-top
from cnn import train  # pylint: disable=g-import-not-at-top
from configs import cnn_seed  # pylint: disable=g-import-not-at-top


def main():
  workdir, overrides = sys.argv[1], sys.argv[2:]
  config = cnn_seed.get_config("test")
  for item in overrides:
    key, value = item.split("=", 1)
    config[key] = type(config[key])(value)
  jax.devices()
  tracemalloc.start()
  _, results = train.train_and_evaluate(config, workdir)
  _, peak = tracemalloc.get_traced_memory()
  print(json.dumps({"peak": peak, "step": results["step"],
                    "accuracy": results["test"]["accuracy"]}))


if __name__ == "__main__":
  main()
