"""Keys shared by the CNN configs (not a runnable config itself)."""

import ml_collections

from common import loop
from common import optim

PRESETS = ("", "cpu", "test")


def get_config() -> ml_collections.ConfigDict:
  c = loop.base_config()
  c.model = ml_collections.ConfigDict(dict(
      name="seed", widths=(32, 64), hidden=128, dropout=0.5, ndim=2))
  c.optimizer = optim.default()
  c.augment_shift = 0   # random translations of up to this many pixels while training
  return c


def finish(c: ml_collections.ConfigDict, preset: str) -> ml_collections.ConfigDict:
  """Applies the 'test' preset (tiny, for the test suite) and rejects unknown presets."""
  if preset not in PRESETS:
    raise ValueError(f"Unknown preset {preset!r}; use one of {', '.join(map(repr, PRESETS))}.")
  if preset == "test":  # seconds on a CPU: for the test suite
    c.name += "_test"
    c.num_epochs = 2
    c.train_examples = 2048
    c.validation_split = 0.02
    c.eval_batch_size = 400
  return c
