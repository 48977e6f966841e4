"""Draws samples from a trained GAN's latest checkpoint.

    python -m gan.sample --workdir=runs/acgan --num=100 --out=samples.npz [--label=6] [--png=grid.png]

Writes `images` (uint8, N x H x W x C, like the dataset's) and, for conditional models, `labels`
(balanced over the classes unless --label is given).
"""

import numpy as np
import jax
from absl import app, flags

from common import parallel
from common import plots
from gan import evaluate
from gan import train as gan_train

FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", None, "A GAN run's workdir.", required=True)
flags.DEFINE_integer("num", 100, "How many samples.", lower_bound=1)
flags.DEFINE_string("out", None, "The .npz file to write.", required=True)
flags.DEFINE_integer("label", None, "Draw only this class (conditional models).", lower_bound=0)
flags.DEFINE_string("png", None, "Also save the samples as a PNG grid.")
flags.DEFINE_integer("seed", 0, "Sampling seed.")


def main(argv):
  del argv
  mesh = parallel.make_mesh()
  try:
    config, players, state, step = evaluate.restore(FLAGS.workdir, mesh)
  except FileNotFoundError as e:
    raise SystemExit(f"Error: {e}") from None
  is_conditional = gan_train.conditional(config)
  if FLAGS.label is not None and not is_conditional:
    raise SystemExit(f"Error: --label needs a conditional model; {config.name} is unconditional.")
  if FLAGS.label is not None and FLAGS.label >= config.model.num_classes:
    raise SystemExit(f"Error: --label={FLAGS.label} is not a class (0..{config.model.num_classes - 1}).")
  images, labels = evaluate.generate(config, players, state, FLAGS.num,
                                     jax.random.PRNGKey(FLAGS.seed), FLAGS.label)
  arrays = {"images": images}
  if is_conditional:
    arrays["labels"] = labels
  np.savez(FLAGS.out, **arrays)
  if FLAGS.png:
    rows = max(1, int(np.sqrt(FLAGS.num)))
    plots.save_grid(images, FLAGS.png, rows, f"{config.name}, step {step}")
  print(f"Wrote {FLAGS.num} samples of {config.name} (step {step}) to {FLAGS.out}")


if __name__ == "__main__":
  app.run(main)
