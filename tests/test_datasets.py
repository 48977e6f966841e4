"""Every model family on datasets other than MNIST, without downloads: TFDS's mock data serves each
dataset's real shapes and class counts (random pixels), and mnist1d is generated.

For each dataset: the course CNN trains, saves and resumes; GANs train an epoch, resume, draw a
grid whose rows carry the dataset's class names, sample and evaluate with that CNN as classifier.
"""

import jax
import numpy as np
import pytest
import tensorflow_datasets as tfds

from common import config as cfg
from common.data import datasets
from common import parallel
from common.run import plots
from cnn import train as cnn_train
from gan import evaluation
from gan import players as players_lib
from gan import train as gan_train
from conftest import load_config

# name: (example shape, classes, the GAN variants run on it: all six on CIFAR-10's 32x32x3, and a
# conditional one on each other dataset, whose class count reaches G, D and the grid)
DATASETS = {
    "cifar10": ((32, 32, 3), 10, ("gan", "dcgan", "cgan", "acgan", "wgan", "wgan_gp")),
    "cifar100": ((32, 32, 3), 100, ("acgan",)),
    "svhn_cropped": ((32, 32, 3), 10, ("cgan",)),
    "emnist/balanced": ((28, 28, 1), 47, ("acgan",)),
}
EXAMPLES = 256


def _small(config, dataset: str, data_dir: str):
  config.dataset, config.data_dir = dataset, data_dir
  config.train_examples, config.validation_split = 0, 0.0
  config.batch_size, config.eval_batch_size = 32, 64
  config.num_epochs = 1
  return config


@pytest.fixture(scope="module", params=list(DATASETS))
def mocked(request, tmp_path_factory):
  """(dataset name, its data_dir, a classifier trained on it) under TFDS's mock data."""
  name = request.param
  data_dir = str(tmp_path_factory.mktemp("tfds"))
  with tfds.testing.mock_data(num_examples=EXAMPLES):
    workdir = str(tmp_path_factory.mktemp("cnn"))
    config = _small(load_config("cnn_seed"), name, data_dir)
    cnn_train.train_and_evaluate(config, workdir)
    yield name, data_dir, workdir


def test_metadata_comes_from_the_dataset(mocked):
  name, data_dir, _ = mocked
  shape, classes, _ = DATASETS[name]
  with tfds.testing.mock_data(num_examples=EXAMPLES):
    info, host = datasets.load_host(_small(load_config("cnn_seed"), name, data_dir))
  assert (info.shape, info.num_classes, len(info.class_names)) == (shape, classes, classes)
  assert host["train"].images.shape == (EXAMPLES,) + shape
  assert host["train"].labels.max() < classes


def test_the_course_cnn_resumes_and_restores(mocked, tmp_path):
  name, data_dir, clf_workdir = mocked
  shape, classes, _ = DATASETS[name]
  with tfds.testing.mock_data(num_examples=EXAMPLES):
    config = _small(load_config("cnn_seed"), name, data_dir)
    config.num_epochs = 2
    state, results = cnn_train.train_and_evaluate(config, clf_workdir)  # resumes the fixture's
  assert int(state.step) == 2 * EXAMPLES // 32 and 0.0 <= results["test"]["accuracy"] <= 1.0
  run, model = cnn_train.restore_classifier(clf_workdir, parallel.make_mesh())
  assert run.info.shape == shape and run.step == int(state.step)
  assert model(np.zeros((2,) + shape, np.float32)).shape == (2, classes)


def test_every_gan_trains_resumes_samples_and_evaluates(mocked, tmp_path, monkeypatch):
  name, data_dir, clf_workdir = mocked
  shape, classes, variants = DATASETS[name]
  grids = []
  monkeypatch.setattr(plots, "save_grid", lambda images, path, rows, title="", row_labels=None:
                      grids.append((images.shape, rows, row_labels)))
  mesh = parallel.make_mesh()
  for variant in variants:
    workdir = str(tmp_path / variant)
    with tfds.testing.mock_data(num_examples=EXAMPLES):
      config = _small(load_config(variant), name, data_dir)
      config.batch_size, config.train_examples = 32, 0
      gan_train.train_and_evaluate(config, workdir)
      config.num_epochs = 2
      state, _ = gan_train.train_and_evaluate(config, workdir)
      assert int(state.step) == 2 * (EXAMPLES // (32 * config.d_steps)), variant
      run, players = players_lib.restore(workdir, mesh)
      images, labels = players_lib.generate(run.config, players, run.state, 20,
                                            jax.random.PRNGKey(0))
      assert images.shape == (20,) + shape and images.dtype == np.uint8
      assert labels.max() < classes
      if variant in ("acgan", "cgan"):
        out = evaluation.evaluate(run.config, run.info, players, run.state, mesh,
                                  classifier_workdir=clf_workdir, num=64)
        assert len(out["class_histogram"]) == classes and "intra_class_fd" in out["real"]
  conditional = [g for g in grids if g[2] is not None]
  assert conditional, "no conditional grid drawn"
  for images_shape, rows, row_labels in conditional:
    assert images_shape[1:] == shape and rows == min(classes, 10) == len(row_labels)


def test_mnist1d_trains_the_1d_cnn_and_gans_refuse_it(tmp_path):
  config = load_config("cnn1d")
  config.num_epochs = 1
  state, results = cnn_train.train_and_evaluate(config, str(tmp_path / "cnn1d"))
  assert results["test"]["accuracy"] > 0.1 and int(state.step) > 0
  gan = load_config("gan", dataset="mnist1d")
  with pytest.raises(datasets.DataError, match="The GANs draw images; mnist1d holds float32"):
    gan_train.train_and_evaluate(gan, str(tmp_path / "gan"))
  seed = load_config("cnn_seed", dataset="mnist1d")
  with pytest.raises(cfg.ConfigError, match="course's 2-D CNN"):
    cnn_train.train_and_evaluate(seed, str(tmp_path / "seed"))


def test_a_generator_with_no_layout_for_the_shape_says_so_before_compiling():
  info = datasets.DatasetInfo("odd", "1", (30, 20, 3), 10, tuple("abcdefghij"))
  with pytest.raises(cfg.ConfigError, match="has no layout for \\(30, 20, 3\\) examples; it "
                                             "supports square images"):
    players_lib.build(load_config("dcgan"), info, 10)
