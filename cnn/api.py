"""A trained classifier in a notebook: `load_classifier(workdir)`, then predict on images.

    from cnn import api
    clf = api.load_classifier("runs/cnn", step="best")
    probs = clf.predict(images)          # uint8 [N, H, W, C] like the dataset's -> [N, classes]
"""

import dataclasses
from typing import Any, Callable

import jax
import numpy as np

from common.data import datasets
from common import parallel
from common.run import runs
from common.data import shards
from cnn import train


def make_classify(model, batch: int = 1000) -> Callable[[np.ndarray], tuple]:
  """uint8 images [N, ...] -> (features [N, F], probabilities [N, K]) from the classifier."""

  @jax.jit
  def apply(images):
    x = shards.to_float(images)
    for layer in model.layers[:-1]:
      x = layer(x, train=False)
    return x, jax.nn.softmax(model.layers[-1](x, train=False).astype(np.float32))

  def classify(images: np.ndarray):
    feats, probs = [], []
    for i in range(0, len(images), batch):
      f, p = apply(images[i:i + batch])
      feats.append(np.asarray(f))
      probs.append(np.asarray(p))
    return np.concatenate(feats), np.concatenate(probs)

  return classify


@dataclasses.dataclass
class Classifier:
  """A trained classifier: its config, dataset metadata, checkpoint step and model."""
  config: Any
  info: datasets.DatasetInfo
  step: int
  model: Any

  def predict(self, images: np.ndarray) -> np.ndarray:
    """Class probabilities [N, K] of uint8 images shaped like the dataset's."""
    return make_classify(self.model)(np.asarray(images))[1]

  def features(self, images: np.ndarray) -> np.ndarray:
    """The penultimate layer's features [N, F] (what the GAN metrics compare)."""
    return make_classify(self.model)(np.asarray(images))[0]


def load_classifier(workdir: str, step: int | str = "latest") -> Classifier:
  """The classifier trained in `workdir` at step 'latest', 'best' or N, on this host's devices."""
  run, model = train.restore_classifier(workdir, parallel.make_mesh(), runs.parse_step(step))
  return Classifier(run.config, run.info, run.step, model)
