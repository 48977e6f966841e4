"""Datasets: TFDS (or the mnist1d generator) read once per process, then held on device, sharded.

Each process's decoded splits are kept as one .npz under the TFDS data_dir (`_arrays/`), so later
runs start without importing TensorFlow; delete that folder to read through TFDS again.

A split on device is `images[S, n, ...]`, `labels[S, n]` (and `mask[S, n]` for evaluation splits,
False on padding), with the leading shard axis S split over the mesh's 'data' axis: each device
holds its own n examples and each process reads only the examples of its own devices.
Each epoch every shard is shuffled on device (`epoch_permutation`), so no host work happens per step.

A training split too big for device memory is a `StreamedSplit` instead (config.data_placement):
the same shards kept in host memory, the same permutation, and each chunk of steps' batches
gathered on the host and placed on device by a background thread ahead of use.
"""

import dataclasses
import os
import pathlib
import queue
import threading
from typing import Iterator

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging
from etils import epath
from jax.experimental import multihost_utils
from jax.sharding import Mesh

from common import parallel

# Names common.data loads without TFDS.
GENERATED = ("mnist1d",)
# TFDS datasets small enough to hold on an accelerator as uint8.
KNOWN_TFDS = ("mnist", "fashion_mnist", "kmnist", "emnist", "cifar10", "cifar100", "svhn_cropped")
# data_placement='auto' streams a training split that would fill more of a device than this.
DEVICE_FRACTION = 0.4
MANUAL_DIR_ENV = "TFDS_MANUAL_DIR"
DATA_DIR_ENV = "TFDS_DATA_DIR"
# Subfolder of the TFDS data_dir where load_host keeps decoded splits (see _arrays_path).
ARRAYS_DIR = "_arrays"
# ../shared/data/<name> beside the repository: where this project's machines keep offline copies.
SHARED_DATA = pathlib.Path(__file__).resolve().parents[2] / "shared" / "data"


class DataError(RuntimeError):
  """A dataset that can't be loaded; the message says what to do."""


@dataclasses.dataclass(frozen=True)
class HostSplit:
  """One process's share of a split, in numpy."""
  images: np.ndarray  # [N, ...] uint8 images or float features
  labels: np.ndarray  # [N] int32
  total: int          # examples in the whole split, over every process


class _Shards:
  """What DeviceSplit and StreamedSplit share: images laid out as [shards, n, ...]."""
  images: jax.Array | np.ndarray

  @property
  def per_shard(self) -> int:
    return self.images.shape[1]

  @property
  def example_shape(self) -> tuple[int, ...]:
    return tuple(self.images.shape[2:])


@dataclasses.dataclass(frozen=True)
class DeviceSplit(_Shards):
  """A split held on device; arrays sharded on their leading (shard) axis."""
  images: jax.Array        # [S, n, ...]
  labels: jax.Array        # [S, n]
  mask: jax.Array | None   # [S, n] bool, False on padding; None for training splits
  num_examples: int        # real examples, padding excluded

  @property
  def num_shards(self) -> int:
    return self.images.shape[0]


@dataclasses.dataclass(frozen=True)
class StreamedSplit(_Shards):
  """A training split kept in host memory, in the shard layout `to_device` would give it.

  Arrays hold this process's shards only; `shard_ids` are their global indices, so the
  permutation of every shard is the one the on-device path draws from the same key.
  """
  images: np.ndarray   # [S_local, n, ...]
  labels: np.ndarray   # [S_local, n]
  shard_ids: np.ndarray  # [S_local] global shard index of each local row
  num_shards: int      # S, over every process
  num_examples: int


jax.tree_util.register_dataclass(
    DeviceSplit, data_fields=["images", "labels", "mask"], meta_fields=["num_examples"])


def manual_dir(config) -> str | None:
  """config.manual_dir, else $TFDS_MANUAL_DIR, else ../shared/data/<dataset> if it exists."""
  if config.manual_dir:
    return os.path.expanduser(config.manual_dir)
  if os.environ.get(MANUAL_DIR_ENV):
    return os.environ[MANUAL_DIR_ENV]
  shared = SHARED_DATA / config.dataset
  return str(shared) if shared.is_dir() else None


def data_dir(config) -> str:
  return os.path.expanduser(
      config.data_dir or os.environ.get(DATA_DIR_ENV) or "~/tensorflow_datasets")


def _hide_accelerators_from_tf():
  """TFDS imports TensorFlow; it must never allocate accelerator memory that JAX needs."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  tf.config.set_visible_devices([], "GPU")
  try:
    tf.config.set_visible_devices([], "TPU")
  except (ValueError, RuntimeError):
    pass


def _tfds_builder(config):
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  _hide_accelerators_from_tf()
  try:
    builder = tfds.builder(config.dataset, data_dir=data_dir(config))
  except tfds.core.registered.DatasetNotFoundError:
    raise DataError(
        f"config.dataset={config.dataset!r} is not a TFDS dataset; use one of "
        f"{', '.join(KNOWN_TFDS + GENERATED)} (or any other TFDS name).") from None
  if builder.is_prepared():
    return builder
  if jax.process_count() > 1:  # one process prepares; the others wait, then read
    if jax.process_index() == 0:
      _prepare(config, builder, tfds)
    multihost_utils.sync_global_devices(f"prepare {config.dataset}")
    return tfds.builder(config.dataset, data_dir=data_dir(config))
  _prepare(config, builder, tfds)
  return builder


def prepare(config) -> None:
  """Prepares config.dataset in its TFDS data_dir if needed (a no-op for generated datasets)."""
  if config.dataset not in GENERATED:
    _tfds_builder(config)


def _prepare(config, builder, tfds) -> None:
  mdir = manual_dir(config)
  where = (f"Put the original files in a folder and pass it as --config.manual_dir=DIR "
           f"(or ${MANUAL_DIR_ENV}); TFDS then prepares {config.dataset!r} offline into "
           f"{data_dir(config)}.")
  if mdir is not None and not os.path.isdir(mdir):
    raise DataError(f"manual_dir {mdir!r} for dataset {config.dataset!r} does not exist. {where}")
  try:
    builder.download_and_prepare(
        download_config=tfds.download.DownloadConfig(manual_dir=mdir))
  except Exception as e:  # TFDS raises many kinds; each means the same thing to the user.
    kind = type(e).__name__
    if "Checksum" in kind or "checksum" in str(e):
      raise DataError(
          f"A file for dataset {config.dataset!r} has the wrong checksum ({kind}: "
          f"{str(e).splitlines()[0][:300]}). Replace it with the original file. {where}") from None
    raise DataError(
        f"Dataset {config.dataset!r} is not prepared in {data_dir(config)} and could not be "
        f"prepared from manual_dir={mdir!r} or downloaded ({kind}: "
        f"{str(e).splitlines()[0][:300] if str(e) else ''}). {where}") from None


def _split_sizes(config, builder) -> tuple[int, int]:
  """Sizes of the training and validation parts of the 'train' split (Keras's validation_split)."""
  n = builder.info.splits["train"].num_examples if builder else 4000
  n_val = int(round(n * config.validation_split))
  return n - n_val, n_val


def _read_tfds(builder, split: str) -> HostSplit:
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  total = builder.info.splits[split].num_examples
  share = tfds.even_splits(split, n=jax.process_count(), drop_remainder=False)[jax.process_index()]
  arrays = tfds.as_numpy(builder.as_dataset(split=share, batch_size=-1))
  return HostSplit(np.asarray(arrays["image"]), np.asarray(arrays["label"], np.int32), total)


def _mnist1d() -> dict[str, np.ndarray]:
  """MNIST-1D from its generator with the paper's default arguments (seed 42, 4000/1000)."""
  from mnist1d.data import get_dataset_args, make_dataset  # pylint: disable=g-import-not-at-top
  d = make_dataset(get_dataset_args())
  return {"train_x": d["x"].astype(np.float32)[..., None], "train_y": d["y"].astype(np.int32),
          "test_x": d["x_test"].astype(np.float32)[..., None],
          "test_y": d["y_test"].astype(np.int32)}


def _process_share(images, labels) -> HostSplit:
  parts = np.array_split(np.arange(len(labels)), jax.process_count())[jax.process_index()]
  return HostSplit(images[parts], labels[parts], len(labels))


def load_host(config) -> dict[str, HostSplit]:
  """This process's share of 'train', 'val' (if validation_split > 0) and 'test', in numpy."""
  if config.dataset == "mnist1d":
    d = _mnist1d()
    n_train = len(d["train_y"]) - int(round(len(d["train_y"]) * config.validation_split))
    n_used = min(n_train, config.train_examples) if config.train_examples else n_train
    out = {"train": _process_share(d["train_x"][:n_used], d["train_y"][:n_used]),
           "test": _process_share(d["test_x"], d["test_y"])}
    if n_train < len(d["train_y"]):
      out["val"] = _process_share(d["train_x"][n_train:], d["train_y"][n_train:])
    return out
  cache = _arrays_path(config)
  if cache.exists():
    return _read_arrays(cache)
  builder = _tfds_builder(config)
  n_train, n_val = _split_sizes(config, builder)
  # The first train_examples of the whole split, then shared between processes.
  n_used = min(n_train, config.train_examples) if config.train_examples else n_train
  out = {"train": _read_tfds(builder, f"train[:{n_used}]"),
         "test": _read_tfds(builder, "test")}
  if n_val:
    out["val"] = _read_tfds(builder, f"train[{n_train}:]")
  _write_arrays(cache, out)
  return out


def _arrays_path(config) -> epath.Path:
  """Where load_host keeps this process's decoded splits, so later runs skip TFDS and TensorFlow.

  Keyed by everything that selects the examples; TFDS datasets are immutable per version. Through
  etils.epath, like the data_dir TFDS reads: local or gs://.
  """
  n = config.train_examples or "all"
  name = (f"{config.dataset}-val{config.validation_split:g}-n{n}"
          f"-p{jax.process_index()}of{jax.process_count()}.npz")
  return epath.Path(data_dir(config)) / ARRAYS_DIR / name


def _write_arrays(path: epath.Path, splits: dict[str, HostSplit]) -> None:
  arrays = {}
  for name, s in splits.items():
    arrays.update({f"{name}.images": s.images, f"{name}.labels": s.labels,
                   f"{name}.total": np.int64(s.total)})
  tmp = path.parent / f"{path.name}.tmp{os.getpid()}"
  try:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tmp.open("wb") as f:
      np.savez_compressed(f, **arrays)
    tmp.rename(path)  # a reader never sees half a file
  except OSError as e:  # a read-only data_dir only costs the next run TFDS's read
    logging.warning("Could not keep decoded arrays in %s: %s", path, e)


def _read_arrays(path: epath.Path) -> dict[str, HostSplit]:
  with path.open("rb") as fh, np.load(fh) as f:
    names = sorted({k.split(".")[0] for k in f.files})
    return {n: HostSplit(f[f"{n}.images"], f[f"{n}.labels"], int(f[f"{n}.total"])) for n in names}


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


def gather_batches(split: DeviceSplit, perm: jax.Array, start: jax.Array, num_batches: int,
                   per_shard_batch: int) -> dict[str, jax.Array]:
  """Batches `start .. start+num_batches` of this epoch's order: image [k, B, ...], label [k, B].

  Each shard contributes `per_shard_batch` of its own examples to every global batch B, so the
  gather is local to each device: no example crosses devices.
  """
  take = num_batches * per_shard_batch
  idx = jax.lax.dynamic_slice_in_dim(perm, start * per_shard_batch, take, axis=1)  # [S, k*b]
  gather = lambda a: jax.vmap(lambda rows, i: rows[i])(a, idx)          # [S, k*b, ...]
  return {"image": _shard_rows_to_batches(gather(split.images), num_batches, per_shard_batch),
          "label": _shard_rows_to_batches(gather(split.labels), num_batches, per_shard_batch)}


def _shard_rows_to_batches(x: jax.Array, num_batches: int, per_shard_batch: int) -> jax.Array:
  """[S, k*b, ...] (each shard's next k*b examples) -> [k, S*b, ...] (k global batches)."""
  x = x.reshape((x.shape[0], num_batches, per_shard_batch) + x.shape[2:])
  x = jnp.moveaxis(x, 1, 0)                                            # [k, S, b, ...]
  return x.reshape((num_batches, -1) + x.shape[3:])


def slice_batches(rows: dict[str, jax.Array], start: jax.Array, num_batches: int,
                  per_shard_batch: int) -> dict[str, jax.Array]:
  """Batches `start .. start+num_batches` of a streamed chunk: rows [S, K*b, ...] -> [k, S*b, ...]."""
  take = num_batches * per_shard_batch
  return {name: _shard_rows_to_batches(
      jax.lax.dynamic_slice_in_dim(a, start * per_shard_batch, take, axis=1),
      num_batches, per_shard_batch) for name, a in rows.items()}


def to_host_shards(mesh: Mesh, split: HostSplit) -> StreamedSplit:
  """A training split in to_device's shard layout, left in host memory for streaming."""
  n_local_devices = len(mesh.local_devices)
  per_shard = len(split.labels) // n_local_devices
  if per_shard == 0:
    raise DataError(f"{len(split.labels)} examples can't be split over {n_local_devices} devices.")
  keep = per_shard * n_local_devices
  index_map = parallel.sharded(mesh).addressable_devices_indices_map((mesh.size,))
  shard_ids = np.array(sorted(ix[0].start or 0 for ix in index_map.values()))
  return StreamedSplit(
      split.images[:keep].reshape((n_local_devices, per_shard) + split.images.shape[1:]),
      split.labels[:keep].reshape((n_local_devices, per_shard)), shard_ids, mesh.size,
      keep * jax.process_count())


def stream_chunks(mesh: Mesh, split: StreamedSplit, shuffle_key: jax.Array,
                  chunks: Iterator[tuple[int, int, int]], chunk_steps: int, batches_per_step: int,
                  per_shard_batch: int) -> Iterator[dict[str, jax.Array]]:
  """Device arrays for each (epoch, start, stop) chunk: rows [S, chunk_steps*k*b, ...].

  Steps `start .. stop` of the epoch, in the order `gather_batches` takes them from the same
  permutation; chunks shorter than chunk_steps are padded, so one compiled program serves all.
  """
  per_step = batches_per_step * per_shard_batch
  perm, perm_epoch = None, None
  rows = np.arange(len(split.shard_ids))[:, None]
  for epoch, start, stop in chunks:
    if epoch != perm_epoch:
      perm = np.asarray(epoch_permutation(jax.random.fold_in(shuffle_key, epoch),
                                          split.num_shards, split.per_shard))[split.shard_ids]
      perm_epoch = epoch
    idx = perm[:, start * per_step:stop * per_step]                     # [S_local, m*k*b]
    out = {}
    for name, a in (("image", split.images), ("label", split.labels)):
      x = np.zeros((len(rows), chunk_steps * per_step) + a.shape[2:], a.dtype)
      x[:, :idx.shape[1]] = a[rows, idx]
      out[name] = parallel.global_array(mesh, x, (split.num_shards,) + x.shape[1:])
    yield out


class Prefetch:
  """Runs an iterator in a background thread, `depth` items ahead, so the device never waits."""

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


def to_float(images: jax.Array, value_range: tuple[float, float] = (0.0, 1.0),
             dtype=jnp.float32) -> jax.Array:
  """uint8 pixels to floats in value_range, on device; float features pass through."""
  if not jnp.issubdtype(images.dtype, jnp.integer):
    return images.astype(dtype)
  lo, hi = value_range
  return (images.astype(dtype) * ((hi - lo) / 255.0) + lo).astype(dtype)


def load(config, mesh: Mesh, *, train_batch: int, eval_batch: int) -> dict:
  """Every split of config.dataset: 'train' on device or streamed (see `placement`), 'val' and
  'test' on device, padded."""
  host = load_host(config)
  per_device_eval = parallel.check_batch(eval_batch, mesh, "eval_batch_size")
  parallel.check_batch(train_batch, mesh)
  where = placement(config, host["train"], mesh)
  logging.info("Training split (%.0f MB in this process) placed on %s", host["train"].images.nbytes
               / 2**20, "the devices" if where == "device" else "the host, streamed")
  out = {"train": (to_host_shards if where == "host" else to_device)(mesh, host["train"])}
  for name in ("val", "test"):
    if name in host:
      out[name] = to_device(mesh, host[name], pad_to=per_device_eval)
  n_local = out["train"].per_shard
  if n_local * mesh.size < train_batch:
    raise DataError(f"The training split holds {n_local * mesh.size} examples, fewer than one "
                    f"batch of {train_batch}; lower config.batch_size.")
  return out


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


def steps_per_epoch(split: DeviceSplit | StreamedSplit, global_batch: int,
                    batches_per_step: int = 1) -> int:
  per_shard_batch = global_batch // split.num_shards
  return split.per_shard // (per_shard_batch * batches_per_step)
