"""Where examples come from: TFDS (or the mnist1d generator), their metadata, and a decoded cache.

`load_host(config)` returns the dataset's `DatasetInfo` (shape, classes, class names: what models,
grids and evaluation are built from) and this process's share of each split in numpy.

Each dataset and version is prepared in isolation: its own download and extraction folder under
`<data_dir>/downloads/<name>/<version>/`, so manually supplied files of one dataset (Fashion-MNIST's
originals have MNIST's file names) can never feed another. Decoded splits are kept in
`<data_dir>/_arrays/v2/`, keyed by dataset, version and selection, and each file records what it
holds; a file that does not match what is asked for, or one written by older code, is never read.
"""

import dataclasses
import hashlib
import json
import os
import sys

import jax
import numpy as np
from absl import logging
from etils import epath
from jax.experimental import multihost_utils

GENERATED = ("mnist1d",)
MANUAL_DIR_ENV = "TFDS_MANUAL_DIR"
DATA_DIR_ENV = "TFDS_DATA_DIR"
# Subfolder of the TFDS data_dir for decoded splits; 'v2' files record their dataset and version.
ARRAYS_DIR = "_arrays/v2"
ARRAY_RECORD = "array_record"  # TFDS's random-access file format: what data_placement='disk' reads


class DataError(RuntimeError):
  """A dataset that can't be loaded, or data that does not match its metadata; says what to do."""


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
  """What the code may assume about a dataset: all of it read from the dataset itself."""
  name: str
  version: str
  shape: tuple[int, ...]      # one example: (H, W, C) images or (L, C) sequences
  num_classes: int
  class_names: tuple[str, ...]
  dtype: str = "uint8"        # uint8 pixels, or float32 features (mnist1d)

  def to_json(self) -> dict:
    return dataclasses.asdict(self)

  @classmethod
  def from_json(cls, d: dict) -> "DatasetInfo":
    return cls(d["name"], d["version"], tuple(d["shape"]), d["num_classes"],
               tuple(d["class_names"]), d.get("dtype", "uint8"))


@dataclasses.dataclass(frozen=True)
class HostSplit:
  """One process's share of a split, in numpy."""
  images: np.ndarray  # [N, ...] uint8 images or float features
  labels: np.ndarray  # [N] int32
  total: int          # examples in the whole split, over every process


def manual_dir(config) -> str | None:
  """Where the dataset's original files are, for offline preparation: config.manual_dir; else
  <d>/<dataset> or <d> itself for d = $TFDS_MANUAL_DIR; else ../shared/data/<dataset> from the
  current folder, where this project's machines keep them beside the checkout; else None."""
  if config.manual_dir:
    return os.path.expanduser(config.manual_dir)
  name = config.dataset.split(":")[0]
  env = os.path.expanduser(os.environ.get(MANUAL_DIR_ENV, ""))
  candidates = [os.path.join(env, name), env] if env else []
  candidates.append(os.path.join(os.pardir, "shared", "data", name))
  return next((os.path.abspath(c) for c in candidates if os.path.isdir(c)), None)


def data_dir(config) -> str:
  return os.path.expanduser(
      config.data_dir or os.environ.get(DATA_DIR_ENV) or "~/tensorflow_datasets")


def _not_found(config) -> DataError:
  return DataError(f"config.dataset={config.dataset!r} is not a TFDS dataset; use a TFDS name "
                   f"such as mnist, fashion_mnist, cifar10, emnist/balanced, or "
                   f"{', '.join(GENERATED)}.")


def _hide_accelerators_from_tf():
  """TFDS imports TensorFlow; it must never allocate accelerator memory that JAX needs."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  tf.config.set_visible_devices([], "GPU")
  try:
    tf.config.set_visible_devices([], "TPU")
  except (ValueError, RuntimeError):
    pass


def _open_builder(config):
  """The TFDS builder of config.dataset, prepared or not."""
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  _hide_accelerators_from_tf()
  try:
    return tfds.builder(config.dataset, data_dir=data_dir(config))
  except (tfds.core.registered.DatasetNotFoundError, ValueError):
    raise _not_found(config) from None


def _builder(config, file_format: str | None = None):
  """The TFDS builder of config.dataset, prepared (once, by process 0, in `file_format` if given:
  TFDS's default tfrecord, or array_record for reading by index) if it was not."""
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  builder = _open_builder(config)
  if builder.is_prepared():
    return builder
  if jax.process_index() == 0:
    _download_and_prepare(config, builder, file_format)
  if jax.process_count() > 1:  # the others wait, then read
    multihost_utils.sync_global_devices(f"prepare {config.dataset}")
  return tfds.builder(config.dataset, data_dir=data_dir(config))


def prepare(config) -> None:
  """Prepares config.dataset in its TFDS data_dir if needed (a no-op for generated datasets)."""
  if config.dataset not in GENERATED:
    _builder(config, ARRAY_RECORD if config.data_placement == "disk" else None)


def _download_and_prepare(config, builder, file_format: str | None = None) -> None:
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  mdir = manual_dir(config)
  where = (f"Put the original files in a folder and pass it as --config.manual_dir=DIR "
           f"(or ${MANUAL_DIR_ENV}); TFDS then prepares {config.dataset!r} offline into "
           f"{data_dir(config)}.")
  if mdir is not None and not os.path.isdir(mdir):
    raise DataError(f"manual_dir {mdir!r} for dataset {config.dataset!r} does not exist. {where}")
  if mdir is not None and not os.listdir(mdir):
    raise DataError(f"manual_dir {mdir!r} for dataset {config.dataset!r} is empty. {where}")
  # Its own download and extraction folder: TFDS names extracted files by their file name alone.
  own = epath.Path(data_dir(config)) / "downloads" / builder.name / str(builder.version)
  # TFDS retries a failed download 10 times with backoff (209 s offline); 2 fail in seconds.
  from tensorflow_datasets.core.download import downloader  # pylint: disable=g-import-not-at-top
  downloader.MAX_RETRIES = min(downloader.MAX_RETRIES, 2)
  tfds.display_progress_bar(sys.stderr.isatty())  # no escape codes in log files
  try:
    builder.download_and_prepare(
        download_dir=own, file_format=file_format,
        download_config=tfds.download.DownloadConfig(manual_dir=mdir))
  except Exception as e:  # TFDS raises many kinds; each means the same thing to the user.
    kind, text = type(e).__name__, (str(e).splitlines() or [""])[0][:300]
    if "checksum" in (kind + text).lower():
      raise DataError(f"A file for dataset {config.dataset!r} has the wrong checksum ({kind}: "
                      f"{text}). Replace it with the original file. {where}") from None
    raise DataError(f"Dataset {config.dataset!r} is not prepared in {data_dir(config)} and could "
                    f"not be prepared from manual_dir={mdir!r} or downloaded ({kind}: {text}). "
                    f"{where}") from None


def _tfds_info(builder) -> DatasetInfo:
  features = builder.info.features
  if "image" not in features or "label" not in features:
    raise DataError(f"Dataset {builder.name!r} has no 'image' and 'label' features "
                    f"({', '.join(features)}); use an image classification dataset.")
  shape = tuple(features["image"].shape)
  if None in shape:
    raise DataError(f"Dataset {builder.name!r} has images of varying size {shape}; use a dataset "
                    "of fixed-size images.")
  label = features["label"]
  return DatasetInfo(builder.info.full_name.rsplit("/", 1)[0], str(builder.version), shape,
                     int(label.num_classes), tuple(str(n) for n in label.names))


def _mnist1d() -> tuple[DatasetInfo, dict[str, tuple[np.ndarray, np.ndarray]]]:
  """MNIST-1D from its generator with the paper's default arguments (seed 42, 4000/1000)."""
  import mnist1d  # pylint: disable=g-import-not-at-top
  from mnist1d.data import get_dataset_args, make_dataset  # pylint: disable=g-import-not-at-top
  d = make_dataset(get_dataset_args())
  x, x_test = (d[k].astype(np.float32)[..., None] for k in ("x", "x_test"))
  classes = int(max(d["y"].max(), d["y_test"].max())) + 1
  info = DatasetInfo("mnist1d", getattr(mnist1d, "__version__", "0"), x.shape[1:], classes,
                     tuple(str(i) for i in range(classes)), "float32")
  return info, {"train": (x, d["y"].astype(np.int32)),
                "test": (x_test, d["y_test"].astype(np.int32))}


def _read_tfds(config) -> tuple[DatasetInfo, dict[str, tuple[np.ndarray, np.ndarray]]]:
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  builder = _builder(config)
  info = _tfds_info(builder)
  splits = {}
  for split in ("train", "test"):
    _check_split(config, builder, split)
    if _random_access(builder):  # array_record has no as_dataset
      source = builder.as_data_source(split=split)
      whole = read_rows(source, 0, len(source), len(source))
      splits[split] = (whole.images, whole.labels)
      continue
    # Batches, not batch_size=-1: that needs the split's size, which mock and some builders lack.
    batches = list(tfds.as_numpy(builder.as_dataset(split=split).batch(8192)))
    splits[split] = (np.concatenate([b["image"] for b in batches]),
                     np.concatenate([b["label"] for b in batches]).astype(np.int32))
  return info, splits


def _check_split(config, builder, split: str) -> None:
  if split not in builder.info.splits and builder.info.splits:
    raise DataError(f"Dataset {config.dataset!r} has no {split!r} split (it has "
                    f"{', '.join(builder.info.splits)}).")


def _random_access(builder) -> bool:
  """Whether the prepared dataset is in array_record, the format TFDS reads by index."""
  return str(builder.info.file_format.value) == ARRAY_RECORD


def read_rows(source, lo: int, hi: int, total: int, batch: int = 4096) -> HostSplit:
  """Examples lo..hi of a random-access source (TFDS's array_record data source) in memory."""
  images, labels = [], []
  for a in range(lo, hi, batch):
    records = source.__getitems__(list(range(a, min(a + batch, hi))))
    images.append(np.stack([r["image"] for r in records]))
    labels.append(np.array([r["label"] for r in records], np.int32))
  if not images:
    raise DataError(f"A split of {hi - lo} examples can't be read; the dataset is empty here.")
  return HostSplit(np.concatenate(images), np.concatenate(labels), total)


def train_ranges(config, n: int) -> dict[str, tuple[int, int]]:
  """Rows of the training split of n examples that make 'train' (its first train_examples) and
  'val' (its last validation_split, if any)."""
  n_train = n - int(round(n * config.validation_split))
  n_used = min(n_train, config.train_examples) if config.train_examples else n_train
  ranges = {"train": (0, n_used)}
  if n_train < n:
    ranges["val"] = (n_train, n)
  return ranges


def process_range(lo: int, hi: int) -> tuple[int, int]:
  """This process's contiguous share of rows lo..hi (processes split them as evenly as can be)."""
  rows = np.array_split(np.arange(lo, hi), jax.process_count())[jax.process_index()]
  return (int(rows[0]), int(rows[-1]) + 1) if len(rows) else (lo, lo)


def select(config, whole: dict) -> dict[str, HostSplit]:
  """'train', 'val' (see train_ranges) and 'test', each shared between processes."""
  images, labels = whole["train"]
  parts = {name: (images[a:b], labels[a:b])
           for name, (a, b) in train_ranges(config, len(labels)).items()}
  parts["test"] = whole["test"]
  return {name: _process_share(*arrays) for name, arrays in parts.items()}


def _process_share(images, labels) -> HostSplit:
  lo, hi = process_range(0, len(labels))
  return HostSplit(images[lo:hi], labels[lo:hi], len(labels))


def check(info: DatasetInfo, splits: dict[str, HostSplit]) -> None:
  """Stops with DataError when a split does not match the dataset's metadata."""
  for name, s in splits.items():
    if tuple(s.images.shape[1:]) != info.shape or s.images.dtype != np.dtype(info.dtype):
      raise DataError(f"The {name} split of {info.name} holds {s.images.dtype} examples of shape "
                      f"{s.images.shape[1:]}, but its metadata says {info.dtype} {info.shape}. "
                      f"Delete {ARRAYS_DIR} in the data_dir and the prepared dataset, then rerun.")
    if len(s.labels) and (s.labels.min() < 0 or s.labels.max() >= info.num_classes):
      raise DataError(f"The {name} split of {info.name} has labels {s.labels.min()}.."
                      f"{s.labels.max()} outside 0..{info.num_classes - 1} (its metadata). "
                      "Delete the prepared dataset and its decoded arrays, then rerun.")


def load_host(config) -> tuple[DatasetInfo, dict[str, HostSplit]]:
  """The dataset's metadata and this process's share of 'train', 'val' (if any) and 'test'."""
  if config.dataset in GENERATED:
    info, whole = _mnist1d()
    splits = select(config, whole)
  else:
    cached = _read_arrays(config)
    if cached is not None:
      return cached
    info, whole = _read_tfds(config)
    splits = select(config, whole)
    check(info, splits)
    _write_arrays(config, info, splits)
  check(info, splits)
  return info, splits


@dataclasses.dataclass(frozen=True)
class DiskSource:
  """A training split left on disk: a random-access source (source[i] -> {'image', 'label'},
  and __getitems__) and this process's rows lo..hi of it."""
  source: object
  lo: int
  hi: int
  total: int  # rows used for training, over every process


def load_disk(config) -> tuple[DatasetInfo, DiskSource, dict[str, HostSplit]]:
  """For data_placement='disk': the metadata, the training split left on disk (prepared as
  array_record if it was not prepared), and this process's share of 'val' and 'test' in memory."""
  if config.dataset in GENERATED:
    raise DataError(f"{config.dataset} is generated in memory, not read from disk; use "
                    "--config.data_placement=device or host.")
  builder = _builder(config, file_format=ARRAY_RECORD)
  if not _random_access(builder):  # prepared as TFDS's default tfrecord: read a converted copy
    builder = _array_record_copy(config, builder)
  info = _tfds_info(builder)
  for split in ("train", "test"):
    _check_split(config, builder, split)
  train, test = (builder.as_data_source(split=s) for s in ("train", "test"))
  ranges = train_ranges(config, len(train))
  evals = {"test": read_rows(test, *process_range(0, len(test)), len(test))}
  if "val" in ranges:
    evals["val"] = read_rows(train, *process_range(*ranges["val"]), len(train) - ranges["val"][0])
  lo, hi = process_range(*ranges["train"])
  if hi > lo:  # the first examples of this process's rows, checked as whole splits are
    check(info, {"train": read_rows(train, lo, min(hi, lo + 256), hi - lo)})
  check(info, evals)
  return info, DiskSource(train, lo, hi, ranges["train"][1]), evals


def _array_record_copy(config, builder):
  """The builder of an array_record copy of a tfrecord-prepared dataset, written once into
  DATA_DIR/array_record/ (the same records, byte for byte, in TFDS's random-access format).

  Our own over `tfds convert_format`: that needs Apache Beam installed even to import."""
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  from tensorflow_datasets.core import file_adapters  # pylint: disable=g-import-not-at-top
  root = epath.Path(data_dir(config)) / ARRAY_RECORD
  out = root / epath.Path(builder.data_dir).relative_to(data_dir(config))
  if jax.process_index() == 0 and not (out / "dataset_info.json").exists():
    print(f"Converting {config.dataset} from tfrecord to {ARRAY_RECORD} (once) into {out} ...",
          flush=True)
    tmp = out.parent / f".{out.name}.incomplete"
    if tmp.exists():
      tmp.rmtree()
    tmp.mkdir(parents=True)
    for f in epath.Path(builder.data_dir).iterdir():
      if ".tfrecord-" not in f.name:
        (tmp / f.name).write_bytes(f.read_bytes())
        continue
      records = file_adapters.TfRecordFileAdapter.make_tf_data(f)
      file_adapters.ArrayRecordFileAdapter.write_examples(
          tmp / f.name.replace(".tfrecord-", f".{ARRAY_RECORD}-"),
          ((i, r.numpy()) for i, r in enumerate(records)))
    info = json.loads((tmp / "dataset_info.json").read_text())
    (tmp / "dataset_info.json").write_text(json.dumps(dict(info, fileFormat=ARRAY_RECORD)))
    tmp.rename(out)
  if jax.process_count() > 1:
    multihost_utils.sync_global_devices(f"convert {config.dataset}")
  return tfds.builder(config.dataset, data_dir=str(root))


def decoded_train_bytes(config) -> int:
  """Decoded size of this process's share of the training split, from metadata or the kept
  decoded splits (0 if unknown)."""
  if config.dataset in GENERATED:
    return 0
  kept = _arrays_path(config)
  if kept.exists():  # decoded before (all of this process's splits): sized without TensorFlow
    return kept.stat().length
  builder = _open_builder(config)  # not prepared here: a disk run prepares it as array_record
  splits = builder.info.splits
  n = splits["train"].num_examples if "train" in splits else 0
  info = _tfds_info(builder)
  return int(n * np.prod(info.shape) * np.dtype(info.dtype).itemsize) // jax.process_count()


def dataset_info(config) -> DatasetInfo:
  """config.dataset's metadata, without decoding any split."""
  if config.dataset in GENERATED:
    return _mnist1d()[0]
  return _tfds_info(_builder(config))


def _version(config) -> str:
  """The version TFDS reads for config.dataset ('name:1.2.3' pins one), found without TensorFlow."""
  name, _, pinned = config.dataset.partition(":")
  if pinned:
    return pinned
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  try:
    return str(tfds.builder_cls(name.split("/")[0]).VERSION)
  except tfds.core.registered.DatasetNotFoundError:  # no code, but maybe prepared in data_dir
    return str(_open_builder(config).version)


def _selection(config) -> dict:
  return {"dataset": config.dataset, "version": _version(config),
          "validation_split": config.validation_split,
          "train_examples": config.train_examples, "process": jax.process_index(),
          "processes": jax.process_count()}


def _arrays_path(config) -> epath.Path:
  """Where this process's decoded splits of this selection are kept (local or gs://)."""
  key = hashlib.sha1(json.dumps(_selection(config), sort_keys=True).encode()).hexdigest()[:12]
  safe = config.dataset.replace("/", "_")
  return epath.Path(data_dir(config)) / ARRAYS_DIR / f"{safe}-{key}.npz"


def _write_arrays(config, info: DatasetInfo, splits: dict[str, HostSplit]) -> None:
  arrays = {"meta": np.array(json.dumps({"selection": _selection(config),
                                         "info": info.to_json()}))}
  for name, s in splits.items():
    arrays.update({f"{name}.images": s.images, f"{name}.labels": s.labels,
                   f"{name}.total": np.int64(s.total)})
  path = _arrays_path(config)
  tmp = path.parent / f"{path.name}.tmp{os.getpid()}"
  try:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tmp.open("wb") as f:
      np.savez(f, **arrays)
    tmp.rename(path)  # a reader never sees half a file
  except OSError as e:  # a read-only data_dir only costs the next run TFDS's read
    logging.warning("Could not keep decoded arrays in %s: %s", path, e)


def _read_arrays(config) -> tuple[DatasetInfo, dict[str, HostSplit]] | None:
  """The kept decoded splits if they are exactly this selection of this dataset, else None."""
  path = _arrays_path(config)
  if not path.exists():
    return None
  try:
    with path.open("rb") as fh, np.load(fh) as f:
      meta = json.loads(str(f["meta"]))
      if meta["selection"] != _selection(config):
        return None
      names = sorted({k.split(".")[0] for k in f.files if k != "meta"})
      splits = {n: HostSplit(f[f"{n}.images"], f[f"{n}.labels"], int(f[f"{n}.total"]))
                for n in names}
  except Exception as e:  # pylint: disable=broad-except  # any damage: read through TFDS again
    logging.warning("Ignoring the damaged decoded-split file %s (%s: %s); reading the dataset "
                    "again.", path, type(e).__name__, e)
    return None
  return DatasetInfo.from_json(meta["info"]), splits
