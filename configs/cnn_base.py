"""Options shared by the CNN configs (not a runnable config itself)."""

import ml_collections

from cnn import options
from configs import presets



def get_config() -> ml_collections.ConfigDict:
  """Every key at its default (cnn/options.py declares each one)."""
  return options.get_config()


def finish(c: ml_collections.ConfigDict, preset: str,
           own: tuple[str, ...] = ()) -> ml_collections.ConfigDict:
  """Applies the 'test' preset (tiny, for the test suite) and rejects unknown presets; `own`
  names the presets the config file applied itself (e.g. 'fashion_mnist')."""
  presets.check(preset, own)
  if preset == "test":  # seconds on a CPU: for the test suite
    c.name += "_test"
    c.num_epochs = 2
    c.train_examples = 2048
    c.validation_split = 0.02
    c.eval_batch_size = 400
  return c
