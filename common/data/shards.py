"""A split held on the devices: `images[S, n, ...]`, `labels[S, n]` (and `mask[S, n]` for evaluation
splits, False on padding), the leading shard axis S split over the mesh's 'data' axis.

Each device holds its own n examples and each process places only the examples of its own devices.
Each epoch every shard is shuffled on device (`epoch_permutation`) and each chunk's rows are
gathered there (`gather_rows`), so no host work happens per step.

Every placement of a training split (this one, streaming.StreamedSplit, disk.DiskSplit) gives the
loop the same thing: `chunks(...)`, each chunk's rows [S, chunk_steps * k * b, ...] on the devices
in this epoch's order, which the compiled chunk slices into batches with `slice_batches`.
"""

import dataclasses
import functools
from typing import Iterator

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh

from common import parallel
from common.data.datasets import DataError, HostSplit


class Shards:
  """What DeviceSplit and StreamedSplit share: images laid out as [shards, n, ...]."""
  images: jax.Array | np.ndarray

  @property
  def per_shard(self) -> int:
    return self.images.shape[1]

  @property
  def example_shape(self) -> tuple[int, ...]:
    return tuple(self.images.shape[2:])

  @property
  def image_dtype(self) -> np.dtype:
    return np.dtype(self.images.dtype)


@dataclasses.dataclass(frozen=True)
class DeviceSplit(Shards):
  """A split held on device; arrays sharded on their leading (shard) axis."""
  images: jax.Array        # [S, n, ...]
  labels: jax.Array        # [S, n]
  mask: jax.Array | None   # [S, n] bool, False on padding; None for training splits
  num_examples: int        # real examples, padding excluded

  max_chunk_steps = None  # a chunk may be the whole epoch

  @property
  def num_shards(self) -> int:
    return self.images.shape[0]

  def chunks(self, mesh: Mesh, shuffle_key, order, chunk_steps: int, per_step: int):
    return device_chunks(self, mesh, shuffle_key, order, chunk_steps, per_step)


jax.tree_util.register_dataclass(
    DeviceSplit, data_fields=["images", "labels", "mask"], meta_fields=["num_examples"])


def device_chunks(split: DeviceSplit, mesh: Mesh, shuffle_key,
                  order: Iterator[tuple[int, int, int]], chunk_steps: int,
                  per_step: int) -> Iterator[dict[str, jax.Array]]:
  """Each (epoch, start, stop) chunk's rows [S, chunk_steps*per_step, ...], gathered on device by
  the epoch's permutation (drawn there once per epoch)."""
  key = parallel.replicate(mesh, jnp.asarray(shuffle_key))
  permute = _permuter(mesh, split.num_shards, split.per_shard)
  perm, perm_epoch = None, None
  for epoch, start, stop in order:
    del stop  # the compiled chunk stops there; rows after it are padding
    if epoch != perm_epoch:
      perm, perm_epoch = permute(key, epoch), epoch
    yield _gather_rows(split, perm, start * per_step, chunk_steps * per_step)


@functools.lru_cache
def _permuter(mesh: Mesh, num_shards: int, per_shard: int):
  """The jitted epoch permutation from (shuffle key, epoch), sharded like the split."""
  return jax.jit(lambda k, e: epoch_permutation(jax.random.fold_in(k, e), num_shards, per_shard),
                 out_shardings=parallel.sharded(mesh))


def to_device(mesh: Mesh, split: HostSplit, *, pad_to: int | None = None) -> DeviceSplit:
  """Shards a split over the mesh.

  Training splits (pad_to=None) drop the few examples that don't fill every shard equally.
  Evaluation splits keep every example: each shard is padded to a multiple of `pad_to`, with mask.
  """
  n_local_devices = len(mesh.local_devices)
  n_proc = len(split.labels)
  if pad_to is None:
    per_shard = n_proc // n_local_devices
    if per_shard == 0:
      raise DataError(f"{n_proc} examples can't be split over {n_local_devices} devices.")
    images = split.images[:per_shard * n_local_devices]
    labels = split.labels[:per_shard * n_local_devices]
    mask = None
    kept = per_shard * n_local_devices * jax.process_count()
  else:
    # Same per-shard size on every process, from the largest process share.
    largest = -(-split.total // jax.process_count())
    per_shard = -(-largest // n_local_devices)
    per_shard = -(-per_shard // pad_to) * pad_to
    pad = per_shard * n_local_devices - n_proc
    images = np.concatenate([split.images, np.zeros((pad,) + split.images.shape[1:],
                                                    split.images.dtype)])
    labels = np.concatenate([split.labels, np.zeros((pad,), np.int32)])
    mask = np.arange(len(labels)) < n_proc
    kept = split.total

  def shard(a):
    local = a.reshape((n_local_devices, per_shard) + a.shape[1:])
    return parallel.global_array(mesh, local, (mesh.size, per_shard) + a.shape[1:])

  return DeviceSplit(shard(images), shard(labels), None if mask is None else shard(mask), kept)


def epoch_permutation(key: jax.Array, num_shards: int, per_shard: int) -> jax.Array:
  """[S, n] int32: an independent shuffle of each shard's examples, drawn on device."""
  keys = jax.random.split(key, num_shards)
  return jax.vmap(lambda k: jax.random.permutation(k, per_shard))(keys).astype(jnp.int32)


def gather_rows(split: DeviceSplit, perm: jax.Array, start: jax.Array,
                rows: int) -> dict[str, jax.Array]:
  """Rows `start .. start+rows` of each shard in this epoch's order: image [S, rows, ...],
  label [S, rows]; rows past the shard's end repeat its last one (a short last chunk's padding,
  never read). The gather is local to each device: no example crosses devices."""
  idx = jnp.minimum(start + jnp.arange(rows), split.per_shard - 1)
  gather = lambda a: jax.vmap(lambda r, i: r[i[idx]])(a, perm)          # [S, rows, ...]
  return {"image": gather(split.images), "label": gather(split.labels)}


_gather_rows = jax.jit(gather_rows, static_argnums=3)


def slice_batches(rows: dict[str, jax.Array], start: jax.Array, num_batches: int,
                  per_shard_batch: int) -> dict[str, jax.Array]:
  """Batches `start .. start+num_batches` of a chunk: rows [S, K*b, ...] -> [k, S*b, ...].

  Each shard contributes `per_shard_batch` of its own examples to every global batch."""
  take = num_batches * per_shard_batch
  return {name: shard_rows_to_batches(
      jax.lax.dynamic_slice_in_dim(a, start * per_shard_batch, take, axis=1),
      num_batches, per_shard_batch) for name, a in rows.items()}


def shard_rows_to_batches(x: jax.Array, num_batches: int, per_shard_batch: int) -> jax.Array:
  """[S, k*b, ...] (each shard's next k*b examples) -> [k, S*b, ...] (k global batches)."""
  x = x.reshape((x.shape[0], num_batches, per_shard_batch) + x.shape[2:])
  x = jnp.moveaxis(x, 1, 0)                                            # [k, S, b, ...]
  return x.reshape((num_batches, -1) + x.shape[3:])


def chunk_like(split, mesh: Mesh, rows: int) -> dict[str, jax.ShapeDtypeStruct]:
  """Shapes, dtypes and shardings of one chunk's rows of `split` (any placement)."""
  lead, sharding = (split.num_shards, rows), parallel.sharded(mesh)
  return {"image": jax.ShapeDtypeStruct(lead + split.example_shape, split.image_dtype,
                                        sharding=sharding),
          "label": jax.ShapeDtypeStruct(lead, np.int32, sharding=sharding)}


def to_float(images: jax.Array, value_range: tuple[float, float] = (0.0, 1.0),
             dtype=jnp.float32) -> jax.Array:
  """uint8 pixels to floats in value_range, on device; float features pass through."""
  if not jnp.issubdtype(images.dtype, jnp.integer):
    return images.astype(dtype)
  lo, hi = value_range
  return (images.astype(dtype) * ((hi - lo) / 255.0) + lo).astype(dtype)


def steps_per_epoch(split: Shards, global_batch: int,
                    batches_per_step: int = 1) -> int:
  per_shard_batch = global_batch // split.num_shards
  return split.per_shard // (per_shard_batch * batches_per_step)
