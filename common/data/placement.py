"""A run's splits, placed: 'train' on the devices, streamed from host memory, or read from disk;
'val' and 'test' on the devices, padded. Sources and metadata: common.data.datasets; layouts:
common.data.shards (device), common.data.streaming (host memory) and common.data.disk (disk)."""

import os

from absl import logging
from jax.sharding import Mesh

from common.data import datasets
from common.data import disk
from common import parallel
from common.data import shards
from common.data import streaming
from common.data.datasets import DataError, DatasetInfo, HostSplit

# data_placement='auto' streams a training split that would fill more of a device than this,
DEVICE_FRACTION = 0.4
# and reads it from disk when it would fill more of the host's available memory than this.
HOST_FRACTION = 0.5


def load(config, mesh: Mesh, *, train_batch: int,
         eval_batch: int) -> tuple[DatasetInfo, dict]:
  """config.dataset's metadata and its splits, placed (see the module docstring)."""
  per_device_eval = parallel.check_batch(eval_batch, mesh, "eval_batch_size")
  parallel.check_batch(train_batch, mesh)
  if reads_from_disk(config):
    info, source, evals = datasets.load_disk(config)
    train = disk.to_disk_shards(mesh, source, info.shape, info.dtype, config.read_threads,
                                config.read_prefetch_steps, config.read_workers)
    logging.info("Training split (%d examples) read from disk as it is used", train.num_examples)
  else:
    info, evals = datasets.load_host(config)
    host_train = evals.pop("train")
    where = placement(config, host_train, mesh)
    logging.info("Training split (%.0f MB in this process) placed on %s", host_train.images.nbytes
                 / 2**20, "the devices" if where == "device" else "the host, streamed")
    train = (streaming.to_host_shards if where == "host" else shards.to_device)(mesh, host_train)
  out = {"train": train}
  for name in ("val", "test"):
    if name in evals:
      out[name] = shards.to_device(mesh, evals[name], pad_to=per_device_eval)
  if train.per_shard * mesh.size < train_batch:
    raise DataError(f"The training split holds {train.per_shard * mesh.size} examples, fewer than "
                    f"one batch of {train_batch}; lower config.batch_size.")
  return info, out


def available_host_memory() -> int:
  return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")


def reads_from_disk(config) -> bool:
  """data_placement='disk', or 'auto' when the decoded training split would take more than
  HOST_FRACTION of the host's available memory."""
  if config.data_placement != "auto":
    return config.data_placement == "disk"
  needed, available = datasets.decoded_train_bytes(config), available_host_memory()
  if needed > HOST_FRACTION * available:
    logging.info("The training split (%.1f GB decoded) would not fit in host memory (%.1f GB "
                 "available): reading it from disk.", needed / 2**30, available / 2**30)
    return True
  return False


def placement(config, train: HostSplit, mesh: Mesh) -> str:
  """'device' or 'host' for a training split in host memory: config.data_placement, or by size.

  'auto' streams when this process's share would take more than DEVICE_FRACTION of a device's
  memory (backends that report no limit, such as CPU, keep it on device).
  """
  if config.data_placement != "auto":
    return config.data_placement
  stats = mesh.local_devices[0].memory_stats() or {}
  limit = stats.get("bytes_limit")
  per_device = (train.images.nbytes + train.labels.nbytes) / len(mesh.local_devices)
  return "host" if limit and per_device > DEVICE_FRACTION * limit else "device"
