"""A training split read from disk by index (config.data_placement='disk'), never held in memory.

grain reads each step's examples from TFDS's random-access array_record files (local or gs://)
in background threads (and, with read_workers, in that many worker processes, so that decoding
leaves the training process), a bounded number of steps ahead, in the order the on-device path takes
them: the same permutation of the same shards. So a run gets the same batches whichever placement
it uses, each process reads only its own rows, and a resumed run starts reading at its step with
nothing saved but the step.
"""

import dataclasses
import functools
import itertools
from typing import Iterator

import grain
import jax
from absl import flags, logging
import numpy as np
from jax.sharding import Mesh

from common.data import streaming
from common.data.datasets import DataError, DiskSource


@dataclasses.dataclass(frozen=True)
class DiskSplit(streaming.HostChunks):
  """This process's shards of a training split on disk, in to_device's layout.

  Local shard r holds source rows first[r] .. first[r] + per_shard; `shard_ids` are the shards'
  global indices, so each shard's permutation is the one the on-device path draws.
  """
  source: object            # random access: __getitems__(list of rows) -> [{'image', 'label'}]
  first: np.ndarray         # [S_local] source row of each local shard's first example
  per_shard: int
  shard_ids: np.ndarray     # [S_local]
  num_shards: int           # S, over every process
  num_examples: int
  example_shape: tuple[int, ...]
  image_dtype: np.dtype
  read_threads: int = 16    # grain threads, each reading one step's examples
  prefetch_steps: int = 32  # steps read ahead of the one being placed on device
  read_workers: int = 0     # grain worker processes (0: the threads run in this process)

  def host_chunks(self, shuffle_key: jax.Array, chunks: Iterator[tuple[int, int, int]],
                  chunk_steps: int, per_step: int) -> Iterator[dict[str, np.ndarray]]:
    """Each (epoch, start, stop) chunk's rows [S_local, chunk_steps*per_step, ...], from disk.

    One grain pipeline per epoch, from the first step asked for to the last.
    """
    for epoch, group in itertools.groupby(chunks, key=lambda c: c[0]):
      group = list(group)
      order = streaming.host_order(self, shuffle_key, epoch)
      reader = self._reader(order, group[0][1], group[-1][2], per_step)
      try:
        for _, start, stop in group:
          parts = [next(reader) for _ in range(stop - start)]
          yield {name: streaming.pad_rows(np.concatenate([p[name] for p in parts], axis=1),
                                          chunk_steps * per_step) for name in ("image", "label")}
      finally:
        reader.close()

  def _reader(self, order: np.ndarray, first: int, stop: int, per_step: int):
    """Steps first..stop-1 in order, read by threads (in read_workers processes, if any)."""
    steps = grain.MapDataset.range(first, stop).map(
        functools.partial(self.read_step, order, per_step=per_step))  # picklable, for workers
    reader = steps.to_iter_dataset(grain.ReadOptions(
        num_threads=self.read_threads, prefetch_buffer_size=self.prefetch_steps))
    if self.read_workers:  # worker w reads steps w, w + W, ...; grain returns them in order
      if not flags.FLAGS.is_parsed():  # grain reads its absl flags; a caller without absl.app
        flags.FLAGS.mark_as_parsed()   # (tests, notebooks) gets their defaults
      reader = reader.mp_prefetch(grain.MultiprocessingOptions(
          num_workers=self.read_workers,
          per_worker_buffer_size=max(1, self.prefetch_steps // self.read_workers)))
    return iter(reader)

  def read_step(self, order: np.ndarray, step: int, per_step: int) -> dict[str, np.ndarray]:
    """One step's examples of every local shard: image [S_local, per_step, ...], label [...]."""
    rows = self.first[:, None] + order[:, step * per_step:(step + 1) * per_step]
    records = self.source.__getitems__(rows.ravel().tolist())
    image = np.stack([r["image"] for r in records]).reshape(rows.shape + self.example_shape)
    label = np.array([r["label"] for r in records], np.int32).reshape(rows.shape)
    if image.dtype != self.image_dtype:
      raise DataError(f"Examples read from disk are {image.dtype}, but the dataset's metadata says "
                      f"{self.image_dtype}; prepare the dataset again.")
    return {"image": image, "label": label}


def to_disk_shards(mesh: Mesh, split: DiskSource, example_shape: tuple[int, ...], dtype: str,
                   read_threads: int = 16, prefetch_steps: int = 32,
                   read_workers: int = 0) -> DiskSplit:
  """This process's rows of a split on disk, in the shard layout to_device would give them."""
  n_local_devices = len(mesh.local_devices)
  per_shard = (split.hi - split.lo) // n_local_devices
  if per_shard == 0:
    raise DataError(f"{split.hi - split.lo} examples can't be split over {n_local_devices} "
                    "devices.")
  first = split.lo + per_shard * np.arange(n_local_devices)
  logging.info("Process %d reads rows %d..%d of the training split from disk",
               jax.process_index(), split.lo, split.lo + per_shard * n_local_devices)
  return DiskSplit(split.source, first, per_shard, streaming.local_shard_ids(mesh), mesh.size,
                   per_shard * n_local_devices * jax.process_count(), tuple(example_shape),
                   np.dtype(dtype), read_threads, prefetch_steps, read_workers)
