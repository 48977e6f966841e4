"""A trained GAN in a notebook: `load_gan(workdir)`, then sample and evaluate.

    from gan import api
    gan = api.load_gan("runs/acgan_cpu", step="best")
    images = gan.sample(labels=[3, 3, 7])        # uint8 [3, H, W, C]; or gan.sample(num=16)
    metrics = gan.evaluate(classifier_workdir="runs/cnn", num=1000)
"""

import dataclasses
from typing import Any, Sequence

import jax
import numpy as np

from common.data import datasets
from common import parallel
from common.run import runs
from cnn import api as cnn_api
from gan import evaluation
from gan import options
from gan import players as players_lib


@dataclasses.dataclass
class TrainedGAN:
  """A GAN run read back: config, dataset metadata, checkpoint step, and what samples it."""
  config: Any
  info: datasets.DatasetInfo
  step: int
  state: Any
  players: players_lib.Players
  mesh: Any

  @property
  def conditional(self) -> bool:
    return options.conditional(self.config)

  def sample(self, labels: Sequence[int] | None = None, num: int | None = None,
             seed: int = 0) -> np.ndarray:
    """uint8 images like the dataset's: one per label, or `num` (classes in turn if conditional)."""
    if (labels is None) == (num is None):
      raise ValueError("Give labels=[...] or num=N.")
    labels = np.arange(num) % self.info.num_classes if labels is None else np.asarray(labels)
    if labels.size and (labels.min() < 0 or labels.max() >= self.info.num_classes):
      raise ValueError(f"labels must be classes of {self.info.name}: 0..{self.info.num_classes - 1}.")
    return players_lib.generate_for(self.config, self.players, self.state, labels,
                                    jax.random.PRNGKey(seed))

  def evaluate(self, classifier_workdir: str | None = None, num: int | None = None,
               seed: int | None = None) -> dict:
    """gan.evaluate's metrics (beside real data's) and protocol, as a dict."""
    return evaluation.evaluate(self.config, self.info, self.players, self.state, self.mesh,
                               classifier_workdir=classifier_workdir, num=num, seed=seed,
                               step=self.step)


def load_gan(workdir: str, step: int | str = "latest") -> TrainedGAN:
  """The GAN trained in `workdir` at step 'latest', 'best' or N, on this host's devices."""
  mesh = parallel.make_mesh()
  run, players = players_lib.restore(workdir, mesh, runs.parse_step(step))
  return TrainedGAN(run.config, run.info, run.step, run.state, players, mesh)


load_classifier = cnn_api.load_classifier  # the classifier the metrics use, from the same import
