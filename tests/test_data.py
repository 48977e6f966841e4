"""TFDS prepares MNIST offline from the shared originals; bad data gives one clear error."""

import os
import shutil
import sys

import jax
import numpy as np
import pytest

from common.data import placement as data
from common.data import datasets
from common import parallel
from common.data import shards
from common.data.datasets import HostSplit
from conftest import FASHION_MNIST_DIR, MNIST_DIR, load_config, skip_or_fail


def test_tfds_prepares_mnist_offline_from_manual_dir(tfds_dir):
  info, host = datasets.load_host(load_config("cnn_seed", "", data_dir=tfds_dir,
                                              manual_dir=MNIST_DIR))
  assert (info.name, info.shape, info.num_classes) == ("mnist", (28, 28, 1), 10)
  assert info.class_names == tuple(str(i) for i in range(10))
  assert host["train"].images.shape == (48000, 28, 28, 1)
  assert host["val"].images.shape == (12000, 28, 28, 1)
  assert host["test"].images.shape == (10000, 28, 28, 1)
  assert host["train"].images.dtype == np.uint8
  labels = np.concatenate([host["train"].labels, host["val"].labels])
  # The shared folder's README gives these training-label counts.
  assert np.bincount(labels).tolist() == [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851,
                                          5949]
  assert os.path.isdir(os.path.join(tfds_dir, "mnist"))


def test_unknown_dataset_name():
  with pytest.raises(datasets.DataError, match="'mnistt' is not a TFDS dataset; use a TFDS name"):
    datasets.load_host(load_config("cnn_seed", "test", dataset="mnistt"))


def test_missing_manual_dir_says_where_to_put_files(tmp_path):
  c = load_config("cnn_seed", "test", data_dir=str(tmp_path / "tfds"),
                  manual_dir=str(tmp_path / "nowhere"))
  with pytest.raises(datasets.DataError, match="does not exist. Put the original files"):
    datasets.load_host(c)


def test_empty_manual_dir_fails_at_once_saying_where_to_put_files(tmp_path):
  (tmp_path / "empty").mkdir()
  c = load_config("cnn_seed", "test", data_dir=str(tmp_path / "tfds"),
                  manual_dir=str(tmp_path / "empty"))
  with pytest.raises(datasets.DataError, match="is empty. Put the original files in a folder"):
    datasets.load_host(c)


def test_wrong_checksum_is_reported(tmp_path, mnist_originals):
  manual = tmp_path / "mnist"
  shutil.copytree(mnist_originals, manual)
  bad = manual / "t10k-labels-idx1-ubyte.gz"
  bad.chmod(0o644)
  bad.write_bytes(bad.read_bytes()[:-10] + b"0123456789")
  c = load_config("cnn_seed", "test", data_dir=str(tmp_path / "tfds"), manual_dir=str(manual))
  with pytest.raises(datasets.DataError, match="checksum"):
    datasets.load_host(c)


def test_epoch_covers_each_example_once_per_shard():
  mesh = parallel.make_mesh()
  split = HostSplit(np.arange(96, dtype=np.int32)[:, None], np.arange(96, dtype=np.int32),
                             96)
  dev = shards.to_device(mesh, split)
  rows = next(dev.chunks(mesh, jax.random.PRNGKey(1), iter([(0, 0, 6)]), 6, 16 // mesh.size))
  batches = shards.slice_batches(rows, 0, 96 // 16, 16 // mesh.size)
  seen = np.asarray(batches["label"]).ravel()
  assert sorted(seen.tolist()) == list(range(96))
  assert not np.array_equal(seen, np.arange(96))  # shuffled
  np.testing.assert_array_equal(np.asarray(batches["image"])[..., 0], np.asarray(batches["label"]))


def test_eval_split_is_padded_and_masked():
  mesh = parallel.make_mesh()
  split = HostSplit(np.zeros((10, 2), np.float32), np.arange(10, dtype=np.int32), 10)
  dev = shards.to_device(mesh, split, pad_to=4)
  assert dev.per_shard % 4 == 0 and int(dev.mask.sum()) == 10 and dev.num_examples == 10


def test_decoded_splits_are_kept_and_read_back_without_tfds(tfds_dir, monkeypatch):
  c = load_config("cnn_seed", "", data_dir=tfds_dir, manual_dir=MNIST_DIR, train_examples=1000)
  _, first = datasets.load_host(c)
  assert datasets._arrays_path(c).exists()  # pylint: disable=protected-access
  monkeypatch.setitem(sys.modules, "tensorflow", None)  # import fails
  assert c.data_placement == "auto" and not data.reads_from_disk(c)  # sized from the kept file
  _, again = datasets.load_host(c)
  assert sorted(again) == sorted(first) == ["test", "train", "val"]
  for name in first:
    np.testing.assert_array_equal(again[name].images, first[name].images)
    np.testing.assert_array_equal(again[name].labels, first[name].labels)
    assert again[name].total == first[name].total
  assert again["train"].images.shape == (1000, 28, 28, 1)
  other = load_config("cnn_seed", "", data_dir=tfds_dir, manual_dir=MNIST_DIR, train_examples=500)
  with pytest.raises(ImportError):  # a different selection is not served from the kept file
    datasets.load_host(other)


def _mean_pixel(host) -> float:
  return float(host["train"].images.mean())


def test_each_dataset_prepared_in_one_data_dir_loads_its_own_files(tmp_path):
  """Fashion-MNIST's originals have MNIST's file names: TFDS's shared extraction folder used to
  serve MNIST's extracted files to Fashion-MNIST (the shared folders' READMEs give the means)."""
  if not (MNIST_DIR and FASHION_MNIST_DIR):
    skip_or_fail("needs $MNIST_DIR and $FASHION_MNIST_DIR (the original files)")
  data_dir = str(tmp_path / "tfds")
  mnist = load_config("cnn_seed", "", data_dir=data_dir, manual_dir=MNIST_DIR,
                      validation_split=0.0)
  fashion = load_config("cnn_seed", "", data_dir=data_dir, manual_dir=FASHION_MNIST_DIR,
                        dataset="fashion_mnist", validation_split=0.0)
  info_m, host_m = datasets.load_host(mnist)
  info_f, host_f = datasets.load_host(fashion)
  assert np.isclose(_mean_pixel(host_m), 33.32, atol=0.01)
  assert np.isclose(_mean_pixel(host_f), 72.94, atol=0.01)
  assert np.bincount(host_f["train"].labels).tolist() == [6000] * 10
  assert info_f.class_names[0] == "T-shirt/top" and info_m.class_names[0] == "0"


def test_decoded_cache_never_serves_another_selection_or_an_old_file(tfds_dir):
  c = load_config("cnn_seed", "", data_dir=tfds_dir, manual_dir=MNIST_DIR, train_examples=300)
  _, real = datasets.load_host(c)
  path = datasets._arrays_path(c)  # pylint: disable=protected-access
  # What older code kept for this selection (its layout has no record of what it holds), here
  # holding blank images: never read.
  blank = {f"{n}.images": np.zeros_like(real[n].images) for n in real}
  blank.update({f"{n}.labels": real[n].labels for n in real})
  blank.update({f"{n}.total": np.int64(real[n].total) for n in real})
  np.savez(path.parent.parent / "mnist-val0-n300-p0of1.npz", **blank)
  path.unlink()
  _, again = datasets.load_host(c)
  np.testing.assert_array_equal(again["train"].images, real["train"].images)
  # A kept file whose record names another selection is not read: the data is decoded again.
  other = load_config("cnn_seed", "", data_dir=tfds_dir, manual_dir=MNIST_DIR, train_examples=200)
  datasets._arrays_path(other).write_bytes(path.read_bytes())  # pylint: disable=protected-access
  _, host = datasets.load_host(other)
  assert len(host["train"].labels) == 200
  np.testing.assert_array_equal(host["train"].images, real["train"].images[:200])


def test_data_that_does_not_match_its_metadata_stops_with_a_clear_error():
  info = datasets.DatasetInfo("toy", "1.0.0", (4, 4, 1), 3, ("a", "b", "c"))
  good = HostSplit(np.zeros((5, 4, 4, 1), np.uint8), np.array([0, 1, 2, 0, 1], np.int32), 5)
  datasets.check(info, {"train": good})
  with pytest.raises(datasets.DataError, match=r"shape \(4, 4, 3\), but its metadata says"):
    datasets.check(info, {"train": HostSplit(np.zeros((5, 4, 4, 3), np.uint8), good.labels, 5)})
  with pytest.raises(datasets.DataError, match="float32 examples"):
    datasets.check(info, {"train": HostSplit(good.images.astype(np.float32), good.labels, 5)})
  with pytest.raises(datasets.DataError, match=r"labels 0..3 outside 0..2"):
    datasets.check(info, {"test": HostSplit(good.images, good.labels + (good.labels == 2), 5)})


def test_a_damaged_decoded_cache_is_read_again_from_tfds(tfds_dir):
  c = load_config("cnn_seed", "", data_dir=tfds_dir, manual_dir=MNIST_DIR, train_examples=100)
  _, first = datasets.load_host(c)
  path = datasets._arrays_path(c)  # pylint: disable=protected-access
  path.write_bytes(path.read_bytes()[:1000])  # cut short, as a full disk or a crash would
  _, again = datasets.load_host(c)
  np.testing.assert_array_equal(again["train"].images, first["train"].images)
