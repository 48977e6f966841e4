"""Draws samples from a trained GAN's checkpoint.

    python -m gan.sample --workdir=runs/acgan --num=100 --out=samples.npz [--label=6] [--png=grid.png]
        [--step=latest|best|N]

Writes `images` (uint8, N x H x W x C, like the dataset's) and, for conditional models, `labels`
(balanced over the classes unless --label is given).
"""

import io

import jax
import numpy as np
from absl import app, flags
from etils import epath

from common import entry
from common import parallel
from common import plots
from common import runs
from gan import keys
from gan import players as players_lib

FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", None, "A GAN run's workdir.", required=True)
flags.DEFINE_integer("num", 100, "How many samples.", lower_bound=1)
flags.DEFINE_string("out", None, "The .npz file to write.", required=True)
flags.DEFINE_integer("label", None, "Draw only this class (conditional models).", lower_bound=0)
flags.DEFINE_string("png", None, "Also save the samples as a PNG grid.")
flags.DEFINE_integer("seed", 0, "Sampling seed.")
flags.DEFINE_string("step", "latest", "Checkpoint: latest, best or a step number.")


def _check_outputs(*paths: str | None) -> None:
  """Refuses, before any sampling, an output whose folder does not exist."""
  for path in filter(None, paths):
    if not epath.Path(path).parent.exists():
      raise runs.RunError(f"The folder of {path} does not exist; create it or write elsewhere.")


def main(argv):
  del argv
  _check_outputs(FLAGS.out, FLAGS.png)
  run, players = players_lib.restore(FLAGS.workdir, parallel.make_mesh(),
                                     entry.parse_step(FLAGS.step))
  config, info = run.config, run.info
  if FLAGS.label is not None and not keys.conditional(config):
    raise runs.RunError(f"--label needs a conditional model; {config.name} is unconditional.")
  if FLAGS.label is not None and FLAGS.label >= info.num_classes:
    raise runs.RunError(f"--label={FLAGS.label} is not a class of {info.name} "
                        f"(0..{info.num_classes - 1}).")
  images, labels = players_lib.generate(config, players, run.state, FLAGS.num,
                                        jax.random.PRNGKey(FLAGS.seed), FLAGS.label)
  arrays = {"images": images}
  if keys.conditional(config):
    arrays["labels"] = labels
  buffer = io.BytesIO()
  np.savez(buffer, **arrays)
  epath.Path(FLAGS.out).write_bytes(buffer.getvalue())
  if FLAGS.png:
    rows = max(1, int(np.sqrt(FLAGS.num)))
    title = f"{config.name}, step {run.step}" + (
        f", {info.class_names[FLAGS.label]}" if FLAGS.label is not None else "")
    plots.save_grid(images, FLAGS.png, rows, title)
  print(f"Wrote {FLAGS.num} samples of {config.name} (step {run.step}) to {FLAGS.out}")


if __name__ == "__main__":
  entry.run_tool(main)
