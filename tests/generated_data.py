"""A TFDS dataset generated in the test itself (no download): coloured squares whose corner is the
label, plus noise, prepared in TFDS's array_record format so it can be read by index.

    prepare(data_dir, num_train, size) -> name   # 'generated_squares', with that many examples

Subprocesses need no import of this module: TFDS reads a prepared dataset from its files.
"""

import numpy as np
import tensorflow_datasets as tfds

NAME = "generated_squares"
NUM_CLASSES = 4
NUM_TEST = 128


class GeneratedSquares(tfds.core.GeneratorBasedBuilder):
  """Images of `size`x`size`x3; label = which corner holds the bright square."""

  VERSION = tfds.core.Version("1.0.0")
  num_train, size = 1024, 16  # set by prepare()

  def _info(self) -> tfds.core.DatasetInfo:
    return tfds.core.DatasetInfo(
        builder=self,
        features=tfds.features.FeaturesDict({
            # Raw tensors, not PNG: large datasets can be generated in seconds.
            "image": tfds.features.Tensor(shape=(self.size, self.size, 3), dtype=np.uint8),
            "label": tfds.features.ClassLabel(num_classes=NUM_CLASSES)}),
        supervised_keys=("image", "label"))

  def _split_generators(self, dl_manager):
    del dl_manager
    return {"train": self._generate_examples(self.num_train, seed=0),
            "test": self._generate_examples(NUM_TEST, seed=1)}

  def _generate_examples(self, n, seed):
    rng = np.random.default_rng(seed)
    half = self.size // 2
    for i in range(n):
      label = int(rng.integers(NUM_CLASSES))
      image = rng.integers(0, 64, (self.size, self.size, 3), dtype=np.uint8)
      r, c = divmod(label, 2)
      image[r * half:(r + 1) * half, c * half:(c + 1) * half] += 160
      yield i, {"image": image, "label": label}


def prepare(data_dir: str, num_train: int = 1024, size: int = 16,
            file_format: str = "array_record") -> str:
  """Generates and prepares the dataset in data_dir; returns its TFDS name."""
  GeneratedSquares.num_train, GeneratedSquares.size = num_train, size
  builder = GeneratedSquares(data_dir=data_dir)
  builder.download_and_prepare(file_format=file_format)
  return NAME
