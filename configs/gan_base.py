"""Options shared by the GAN configs (not a runnable config itself)."""

import ml_collections

from gan import options
from configs import presets



def get_config() -> ml_collections.ConfigDict:
  """Every key at its default (gan/options.py declares each one)."""
  return options.get_config()


def cpu(c: ml_collections.ConfigDict, width: int = 32) -> ml_collections.ConfigDict:
  """The usual start of a ':cpu' preset: the name, and G and D narrowed to `width`."""
  c.name += "_cpu"
  c.model.g_width = c.model.d_width = width
  return c


def finish(c: ml_collections.ConfigDict, preset: str,
           own: tuple[str, ...] = ()) -> ml_collections.ConfigDict:
  """Applies the 'test' preset (a few steps, for the test suite) and rejects unknown presets;
  `own` names the presets the config file applied itself (e.g. 'cifar10')."""
  presets.check(preset, own)
  if preset == "test":
    c.name += "_test"
    c.num_epochs = 2
    c.train_examples = 640 * c.d_steps
    c.batch_size = 64
    c.eval_samples = 0
    c.model.g_width = min(c.model.g_width, 8)
    c.model.d_width = min(c.model.d_width, 8)
    c.model.g_hidden = 32
  return c
