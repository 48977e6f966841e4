"""A run's splits, placed: 'train' on the devices or streamed from the host, 'val' and 'test' on
the devices, padded. Sources and metadata: common.datasets; layouts: common.shards and
common.streaming."""

from absl import logging
from jax.sharding import Mesh

from common import datasets
from common import parallel
from common import shards
from common import streaming
from common.datasets import DataError, DatasetInfo, HostSplit

# data_placement='auto' streams a training split that would fill more of a device than this.
DEVICE_FRACTION = 0.4


def load(config, mesh: Mesh, *, train_batch: int,
         eval_batch: int) -> tuple[DatasetInfo, dict]:
  """config.dataset's metadata and its splits, placed (see the module docstring)."""
  per_device_eval = parallel.check_batch(eval_batch, mesh, "eval_batch_size")
  parallel.check_batch(train_batch, mesh)
  info, host = datasets.load_host(config)
  where = placement(config, host["train"], mesh)
  logging.info("Training split (%.0f MB in this process) placed on %s", host["train"].images.nbytes
               / 2**20, "the devices" if where == "device" else "the host, streamed")
  out = {"train": (streaming.to_host_shards if where == "host" else shards.to_device)(
      mesh, host["train"])}
  for name in ("val", "test"):
    if name in host:
      out[name] = shards.to_device(mesh, host[name], pad_to=per_device_eval)
  n_local = out["train"].per_shard
  if n_local * mesh.size < train_batch:
    raise DataError(f"The training split holds {n_local * mesh.size} examples, fewer than one "
                    f"batch of {train_batch}; lower config.batch_size.")
  return info, out


def placement(config, train: HostSplit, mesh: Mesh) -> str:
  """'device' or 'host' for the training split: config.data_placement, or by size if 'auto'.

  'auto' streams when this process's share would take more than DEVICE_FRACTION of a device's
  memory (backends that report no limit, such as CPU, keep it on device).
  """
  if config.data_placement != "auto":
    return config.data_placement
  stats = mesh.local_devices[0].memory_stats() or {}
  limit = stats.get("bytes_limit")
  per_device = (train.images.nbytes + train.labels.nbytes) / len(mesh.local_devices)
  return "host" if limit and per_device > DEVICE_FRACTION * limit else "device"
