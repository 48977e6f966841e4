"""TFDS prepares MNIST offline from the shared originals; bad data gives one clear error."""

import os
import shutil
import sys

import jax
import numpy as np
import pytest

from common import data as data_lib
from common import parallel
from conftest import MNIST_DIR, load_config


def test_tfds_prepares_mnist_offline_from_manual_dir(tfds_dir):
  host = data_lib.load_host(load_config("cnn_seed", "", data_dir=tfds_dir, manual_dir=MNIST_DIR))
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
  with pytest.raises(data_lib.DataError, match="'mnistt' is not a TFDS dataset; use one of"):
    data_lib.load_host(load_config("cnn_seed", "test", dataset="mnistt"))


def test_missing_manual_dir_says_where_to_put_files(tmp_path):
  c = load_config("cnn_seed", "test", data_dir=str(tmp_path / "tfds"),
                  manual_dir=str(tmp_path / "nowhere"))
  with pytest.raises(data_lib.DataError, match="does not exist. Put the original files"):
    data_lib.load_host(c)


def test_wrong_checksum_is_reported(tmp_path):
  manual = tmp_path / "mnist"
  shutil.copytree(MNIST_DIR, manual)
  bad = manual / "t10k-labels-idx1-ubyte.gz"
  bad.chmod(0o644)
  bad.write_bytes(bad.read_bytes()[:-10] + b"0123456789")
  c = load_config("cnn_seed", "test", data_dir=str(tmp_path / "tfds"), manual_dir=str(manual))
  with pytest.raises(data_lib.DataError, match="checksum"):
    data_lib.load_host(c)


def test_epoch_covers_each_example_once_per_shard():
  mesh = parallel.make_mesh()
  split = data_lib.HostSplit(np.arange(96, dtype=np.int32)[:, None], np.arange(96, dtype=np.int32),
                             96)
  dev = data_lib.to_device(mesh, split)
  perm = data_lib.epoch_permutation(jax.random.PRNGKey(1), dev.images.shape[0], dev.per_shard)
  batches = data_lib.gather_batches(dev, perm, 0, 96 // 16, 16 // mesh.size)
  seen = np.asarray(batches["label"]).ravel()
  assert sorted(seen.tolist()) == list(range(96))
  assert not np.array_equal(seen, np.arange(96))  # shuffled
  np.testing.assert_array_equal(np.asarray(batches["image"])[..., 0], np.asarray(batches["label"]))


def test_eval_split_is_padded_and_masked():
  mesh = parallel.make_mesh()
  split = data_lib.HostSplit(np.zeros((10, 2), np.float32), np.arange(10, dtype=np.int32), 10)
  dev = data_lib.to_device(mesh, split, pad_to=4)
  assert dev.per_shard % 4 == 0 and int(dev.mask.sum()) == 10 and dev.num_examples == 10


def test_decoded_splits_are_kept_and_read_back_without_tfds(tfds_dir, monkeypatch):
  c = load_config("cnn_seed", "", data_dir=tfds_dir, manual_dir=MNIST_DIR, train_examples=1000)
  first = data_lib.load_host(c)
  assert data_lib._arrays_path(c).exists()  # pylint: disable=protected-access
  monkeypatch.setitem(sys.modules, "tensorflow_datasets", None)  # import fails
  again = data_lib.load_host(c)
  assert sorted(again) == sorted(first) == ["test", "train", "val"]
  for name in first:
    np.testing.assert_array_equal(again[name].images, first[name].images)
    np.testing.assert_array_equal(again[name].labels, first[name].labels)
    assert again[name].total == first[name].total
  assert again["train"].images.shape == (1000, 28, 28, 1)
  other = load_config("cnn_seed", "", data_dir=tfds_dir, manual_dir=MNIST_DIR, train_examples=500)
  with pytest.raises(ImportError):  # a different selection is not served from the kept file
    data_lib.load_host(other)
