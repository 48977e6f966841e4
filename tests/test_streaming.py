"""The host-streaming and disk data paths draw exactly the batches the on-device path draws."""

import dataclasses
import json

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from common.run import checkpoint
from common import config as cfg
from common.data import placement as data_lib
from common.data import disk
from common import options
from common.run import loop
from common import parallel
from common.data import shards
from common.data import streaming
from common.data.datasets import DiskSource, HostSplit
from conftest import latest_params, run_module

EPOCHS, STEPS_PER_EPOCH, BATCH = 3, 6, 8


def _recording_task():
  """Writes every step's batch into params['seen'][step], so runs can be compared batch by batch."""
  tx = optax.sgd(0.1)

  def init(key):
    params = {"w": jnp.zeros((2,)), "seen": jnp.zeros((EPOCHS * STEPS_PER_EPOCH, BATCH, 2)),
              "keys": jnp.zeros((EPOCHS * STEPS_PER_EPOCH,) + key.shape, key.dtype)}
    return loop.TrainState(step=jnp.int32(0), key=key, params=params,
                           opt_state=tx.init({"w": params["w"]}), model_state={})

  def train_step(state, batch, key):
    x = batch["image"][0].astype(jnp.float32) + batch["label"][0][:, None] * 1000.0
    seen = state.params["seen"].at[state.step].set(x)
    keys_seen = state.params["keys"].at[state.step].set(key)  # and every step's key
    updates, opt_state = tx.update({"w": state.params["w"] - x.mean(0)}, state.opt_state)
    w = optax.apply_updates(state.params["w"], updates["w"])
    return (state.replace(params={"w": w, "seen": seen, "keys": keys_seen}, opt_state=opt_state),
            {"loss": jnp.sum(w)})

  return loop.Task(init=init, train_step=train_step)


class MemorySource:
  """A random-access source like TFDS's array_record one, over arrays; counts the rows read."""

  def __init__(self, images, labels):
    self.images, self.labels, self.reads = images, labels, 0

  def __len__(self):
    return len(self.labels)

  def __getitems__(self, rows):
    self.reads += len(rows)
    return [{"image": self.images[i], "label": self.labels[i]} for i in rows]


def _split(mesh, placement):
  n = STEPS_PER_EPOCH * BATCH + 5  # a few left over, dropped as the device path drops them
  rng = np.random.RandomState(0)
  host = HostSplit(rng.randint(0, 255, (n, 2)).astype(np.uint8),
                            rng.randint(0, 10, n).astype(np.int32), n)
  if placement == "disk":
    source = DiskSource(MemorySource(host.images, host.labels), 0, n, n)
    return {"train": disk.to_disk_shards(mesh, source, (2,), "uint8", read_threads=3)}
  to = streaming.to_host_shards if placement == "host" else shards.to_device
  return {"train": to(mesh, host)}


def _config(**overrides):
  c = cfg.defaults(options.RUN)
  c.batch_size, c.num_epochs = BATCH, EPOCHS
  c.update(overrides)
  return c


@pytest.mark.parametrize("placement", ["device", "host", "disk"])
def test_streamed_batches_equal_on_device_batches_across_a_mid_epoch_resume(tmp_path, monkeypatch,
                                                                          placement):
  """Against a run in whole-epoch chunks on device; `device` checks the chunking alone."""
  mesh = parallel.make_mesh()
  task = _recording_task()
  ref, _ = loop.run(_config(), str(tmp_path / "device"), task, _split(mesh, "device"), mesh)
  seen_ref = np.asarray(ref.params["seen"])
  assert len(np.unique(seen_ref.reshape(-1, 2), axis=0)) > STEPS_PER_EPOCH * BATCH // 2
  _, step_key = loop.run_keys(jax.random.PRNGKey(_config().seed))
  np.testing.assert_array_equal(  # each step's key is drawn from the run's step count
      ref.params["keys"],
      [jax.random.fold_in(step_key, s) for s in range(EPOCHS * STEPS_PER_EPOCH)])

  # Chunks of 4 steps don't divide the 6-step epoch: padded chunks, and a stop at step 10, mid-epoch.
  streamed = _config(steps_per_call=4)
  workdir = str(tmp_path / f"{placement}_in_chunks")
  monkeypatch.setattr(checkpoint.Preemption, "reached", lambda self, step: step == 10)
  _, r = loop.run(streamed, workdir, task, _split(mesh, placement), mesh)
  assert r["preempted"] and r["step"] == 10
  monkeypatch.undo()
  state, r = loop.run(streamed, workdir, task, _split(mesh, placement), mesh)
  assert not r["preempted"]
  for name in ("seen", "keys", "w"):
    np.testing.assert_array_equal(np.asarray(state.params[name]), np.asarray(ref.params[name]))


def test_auto_placement_streams_what_would_not_fit():
  mesh = parallel.make_mesh()
  host = HostSplit(np.zeros((100, 4), np.uint8), np.zeros(100, np.int32), 100)
  device = mesh.local_devices[0]
  assert data_lib.placement(_config(data_placement="host"), host, mesh) == "host"
  assert data_lib.placement(_config(data_placement="device"), host, mesh) == "device"

  class SmallDevice:  # reports a memory limit, as GPUs and TPUs do
    def memory_stats(self):
      return {"bytes_limit": 1000}

  small = dataclasses.make_dataclass("M", [("local_devices", list)])([SmallDevice()])
  assert data_lib.placement(_config(), host, small) == "host"       # 800 bytes > 40% of 1000
  big = dataclasses.make_dataclass("M", [("local_devices", list)])([SmallDevice()] * 4)
  assert data_lib.placement(_config(), host, big) == "device"       # 200 bytes per device
  if not device.memory_stats():  # CPU reports no limit: the data stays on device
    assert data_lib.placement(_config(), host, mesh) == "device"


def test_auto_reads_from_disk_what_would_not_fit_in_host_memory(monkeypatch):
  assert data_lib.reads_from_disk(_config(data_placement="disk"))
  assert not data_lib.reads_from_disk(_config(data_placement="host"))
  monkeypatch.setattr(data_lib.datasets, "decoded_train_bytes", lambda config: 600)
  monkeypatch.setattr(data_lib, "available_host_memory", lambda: 1000)
  assert data_lib.reads_from_disk(_config())           # 600 bytes > 50% of 1000
  monkeypatch.setattr(data_lib, "available_host_memory", lambda: 2000)
  assert not data_lib.reads_from_disk(_config())


def test_disk_split_reads_each_example_once_per_epoch_in_bounded_steps():
  """Over 4 devices, one epoch reads each used row once, in order of the on-device permutation."""
  mesh = parallel.make_mesh()
  n, per_step = 64, 8
  source = MemorySource(np.arange(n, dtype=np.uint8)[:, None], np.arange(n, dtype=np.int32) % 7)
  split = disk.to_disk_shards(mesh, DiskSource(source, 0, n, n), (1,), "uint8", read_threads=2,
                              prefetch_steps=1)
  key = jax.random.PRNGKey(3)
  spe = split.per_shard // (per_step // split.num_shards)
  chunks = list(split.host_chunks(key, iter([(0, 0, spe)]), spe, per_step // split.num_shards))
  images = chunks[0]["image"][..., 0].astype(int)                     # [S, n/S]
  assert sorted(images.ravel()) == list(range(n)) and source.reads == n
  order = streaming.host_order(split, key, 0)
  np.testing.assert_array_equal(images, split.first[:, None] + order)


def test_disk_reader_worker_processes_give_the_threads_chunks():
  """read_workers=2 (grain worker processes) yields the chunks the in-process threads yield."""
  mesh = parallel.make_mesh()
  n, per_step, spe = 64, 8, 4
  source = MemorySource(np.arange(n, dtype=np.uint8)[:, None], np.arange(n, dtype=np.int32) % 7)
  chunks = [(e, a, a + 2) for e in range(2) for a in range(0, spe, 2)]  # 2 epochs, 2 chunks each

  def read(workers):
    split = disk.to_disk_shards(mesh, DiskSource(source, 0, n, n), (1,), "uint8", read_threads=2,
                                prefetch_steps=2, read_workers=workers)
    return list(split.host_chunks(jax.random.PRNGKey(3), iter(chunks), 2,
                                  per_step // split.num_shards))

  threads, workers = read(0), read(2)
  assert len(threads) == len(chunks) == len(workers)
  for a, b in zip(threads, workers):
    for name in ("image", "label"):
      np.testing.assert_array_equal(a[name], b[name])
  assert not np.array_equal(threads[0]["image"], threads[2]["image"])  # epochs differ


@pytest.mark.parametrize("devices", [4])
def test_cnn_run_streamed_over_devices_equals_on_device(tfds_dir, tmp_path, devices):
  args = ["-m", "cnn.main", "--config=configs/cnn_seed.py:test", "--config.steps_per_call=3"]
  env = {"XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}"}
  for placement in ("device", "host"):
    r = run_module(args + [f"--workdir={tmp_path / placement}",
                           f"--config.data_placement={placement}"], env)
    assert r.returncode == 0, r.stderr[-3000:]
  on_device, s1 = latest_params(str(tmp_path / "device"))
  streamed, s2 = latest_params(str(tmp_path / "host"))
  assert s1 == s2 == 32
  for a, b in zip(jax.tree.leaves(on_device["params"]), jax.tree.leaves(streamed["params"])):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_bench_compares_placements(tfds_dir):
  r = run_module(["scripts/bench.py", "--config=configs/cnn_seed.py:test",
                  "--placements=device,host", "--repeats=1", "--json"])
  assert r.returncode == 0, r.stderr[-3000:]
  rows = json.loads(r.stdout[r.stdout.index("{"):])["rows"]
  assert [row["framework"].split(", ")[1] for row in rows] == ["data on device", "data on host"]
  assert all(row["examples_per_sec"] > 0 and row["steps"] == 16 for row in rows)
