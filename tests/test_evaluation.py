"""Padded evaluation: a split that does not fill its last batch gives the loss and accuracy a numpy
reference computes over its real examples only, on 1 device and on 8 (simulated CPU) devices."""

import jax
import jax.numpy as jnp
import numpy as np
import optax

from common.data import datasets
from common.run import loop
from common import parallel
from common.data import shards
from cnn import options as cnn_options
from cnn import train
from conftest import run_module

N, EVAL_BATCH = 203, 32  # 203 examples: the last batch is part padding on 1 and on 8 devices


def check_padded_evaluation() -> None:
  """Asserts that make_evaluate's padded pass equals the numpy reference on this mesh."""
  mesh = parallel.make_mesh()
  info = datasets.DatasetInfo("toy", "1", (8, 8, 1), 10, tuple(map(str, range(10))))
  model = train.build_model(cnn_options.get_config().model, info, jnp.float32, jax.random.PRNGKey(0))
  task = train.make_task(model, optax.sgd(0.1), dtype="float32")
  rng = np.random.RandomState(0)
  images = rng.randint(0, 256, (N, 8, 8, 1)).astype(np.uint8)
  logits = np.asarray(model(shards.to_float(jnp.asarray(images)), train=False), np.float64)
  # Labels the model gets right about half the time; padding (zero images, label 0) would count
  # as correct: a zero image has zero logits, whose argmax is class 0.
  labels = np.where(rng.rand(N) < 0.5, logits.argmax(1), rng.randint(0, 10, N)).astype(np.int32)
  assert np.asarray(model(jnp.zeros((1, 8, 8, 1)), train=False)).argmax() == 0
  split = shards.to_device(mesh, datasets.HostSplit(images, labels, N),
                           pad_to=EVAL_BATCH // mesh.size)
  assert split.num_examples == N and split.per_shard * mesh.size > N  # padded
  state = parallel.replicate(mesh, task.init(jax.random.PRNGKey(1)))
  got = loop.evaluate_split(loop.make_evaluate(task, EVAL_BATCH), state, split)
  log_p = logits - logits.max(1, keepdims=True)
  log_p -= np.log(np.exp(log_p).sum(1, keepdims=True))
  want = {"loss": -np.mean(log_p[np.arange(N), labels]),
          "accuracy": np.mean(logits.argmax(1) == labels)}
  assert 0.3 < want["accuracy"] < 0.9
  np.testing.assert_allclose(got["loss"], want["loss"], rtol=1e-5)
  assert got["accuracy"] == want["accuracy"]


def test_padded_evaluation_equals_the_numpy_reference_on_one_device():
  check_padded_evaluation()


def test_padded_evaluation_equals_the_numpy_reference_on_eight_devices():
  script = ("import sys; sys.path.insert(0, 'tests'); import jax; assert jax.device_count() == 8; "
            "import test_evaluation; test_evaluation.check_padded_evaluation(); print('EVAL_OK')")
  r = run_module(["-c", script],
                 env_extra={"XLA_FLAGS": "--xla_force_host_platform_device_count=8"})
  assert r.returncode == 0 and "EVAL_OK" in r.stdout, r.stderr[-3000:]
