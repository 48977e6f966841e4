"""A training split too big for device memory, streamed from the host (config.data_placement).

The same shards as on device (`shards.DeviceSplit`), kept in host memory; the same permutation;
each chunk of steps' rows gathered on the host and placed on device by a background thread
ahead of use, so the compiled chunk sees exactly the rows the on-device path would give it.
"""

import dataclasses
import queue
import threading
from typing import Iterator

import jax
import numpy as np
from jax.sharding import Mesh

from common import parallel
from common.data import shards
from common.data.datasets import DataError, HostSplit


class HostChunks:
  """A training split placed on the host (in memory, or on disk): `host_chunks` gathers each
  chunk's rows there, and a background thread puts them on the devices ahead of use."""
  max_chunk_steps = 16  # steps per host-to-device transfer: bounds the host memory of a chunk

  def chunks(self, mesh: Mesh, shuffle_key, order, chunk_steps: int, per_step: int) -> "Prefetch":
    return Prefetch(stream_chunks(mesh, self, shuffle_key, order, chunk_steps, per_step))


@dataclasses.dataclass(frozen=True)
class StreamedSplit(shards.Shards, HostChunks):
  """A training split kept in host memory, in the shard layout `to_device` would give it.

  Arrays hold this process's shards only; `shard_ids` are their global indices, so the
  permutation of every shard is the one the on-device path draws from the same key.
  """
  images: np.ndarray   # [S_local, n, ...]
  labels: np.ndarray   # [S_local, n]
  shard_ids: np.ndarray  # [S_local] global shard index of each local row
  num_shards: int      # S, over every process
  num_examples: int

  def host_chunks(self, shuffle_key: jax.Array, chunks: Iterator[tuple[int, int, int]],
                  chunk_steps: int, per_step: int) -> Iterator[dict[str, np.ndarray]]:
    """Each (epoch, start, stop) chunk's rows [S_local, chunk_steps*per_step, ...], from memory."""
    order, order_epoch = None, None
    rows = np.arange(len(self.shard_ids))[:, None]
    for epoch, start, stop in chunks:
      if epoch != order_epoch:
        order, order_epoch = host_order(self, shuffle_key, epoch), epoch
      idx = order[:, start * per_step:stop * per_step]                     # [S_local, m*k*b]
      yield {name: pad_rows(a[rows, idx], chunk_steps * per_step)
             for name, a in (("image", self.images), ("label", self.labels))}


def local_shard_ids(mesh: Mesh) -> np.ndarray:
  """The global shard index of each of this process's devices, in local order."""
  index_map = parallel.sharded(mesh).addressable_devices_indices_map((mesh.size,))
  return np.array(sorted(ix[0].start or 0 for ix in index_map.values()))


def to_host_shards(mesh: Mesh, split: HostSplit) -> StreamedSplit:
  """A training split in to_device's shard layout, left in host memory for streaming."""
  n_local_devices = len(mesh.local_devices)
  per_shard = len(split.labels) // n_local_devices
  if per_shard == 0:
    raise DataError(f"{len(split.labels)} examples can't be split over {n_local_devices} devices.")
  keep = per_shard * n_local_devices
  return StreamedSplit(
      split.images[:keep].reshape((n_local_devices, per_shard) + split.images.shape[1:]),
      split.labels[:keep].reshape((n_local_devices, per_shard)), local_shard_ids(mesh),
      mesh.size, keep * jax.process_count())


def host_order(split, shuffle_key: jax.Array, epoch: int) -> np.ndarray:
  """[S_local, n]: this process's rows of the permutation the on-device path draws for `epoch`."""
  perm = shards.epoch_permutation(jax.random.fold_in(shuffle_key, epoch), split.num_shards,
                                  split.per_shard)
  return np.asarray(perm)[split.shard_ids]


def pad_rows(x: np.ndarray, rows: int) -> np.ndarray:
  """[S, m, ...] -> [S, rows, ...], zeros after the m real rows (a short last chunk)."""
  if x.shape[1] == rows:
    return x
  out = np.zeros((x.shape[0], rows) + x.shape[2:], x.dtype)
  out[:, :x.shape[1]] = x
  return out


def stream_chunks(mesh: Mesh, split, shuffle_key: jax.Array,
                  chunks: Iterator[tuple[int, int, int]], chunk_steps: int,
                  per_step: int) -> Iterator[dict[str, jax.Array]]:
  """Device arrays for each (epoch, start, stop) chunk: rows [S, chunk_steps*per_step, ...].

  Steps `start .. stop` of the epoch, in the order the on-device path takes them from the same
  permutation; chunks shorter than chunk_steps are padded, so one compiled program serves all.
  `split` is a StreamedSplit (rows from memory) or a disk.DiskSplit (rows read by grain).
  """
  for host in split.host_chunks(shuffle_key, chunks, chunk_steps, per_step):
    yield {name: parallel.global_array(mesh, x, (split.num_shards,) + x.shape[1:])
           for name, x in host.items()}


class Prefetch:
  """Runs an iterator in a background thread, `depth` items ahead, so the device never waits.

  Our own over tf.data or grain prefetching: the items are already device arrays of one chunk."""

  def __init__(self, iterator: Iterator, depth: int = 2):
    self._queue = queue.Queue(maxsize=depth)
    self._stop = threading.Event()
    self._thread = threading.Thread(target=self._fill, args=(iterator,), daemon=True)
    self._thread.start()

  def _fill(self, iterator):
    try:
      for item in iterator:
        while not self._stop.is_set():
          try:
            self._queue.put(("item", item), timeout=0.1)
            break
          except queue.Full:
            continue
        if self._stop.is_set():
          return
      self._queue.put(("end", None))
    except Exception as e:  # pylint: disable=broad-except
      self._queue.put(("error", e))  # re-raised in the consumer's thread

  def __next__(self):
    kind, item = self._queue.get()
    if kind == "error":
      raise item
    if kind == "end":
      raise StopIteration
    return item

  def __iter__(self):
    return self

  def close(self) -> None:
    self._stop.set()
    while self._thread.is_alive():
      try:
        self._queue.get(timeout=0.1)
      except queue.Empty:
        pass
