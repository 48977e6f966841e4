"""Draws samples from a trained GAN's checkpoint.

    python -m gan.sample --workdir=runs/acgan --num=100 [--out=samples.npz] [--png=grid.png]
        [--label=6] [--step=latest|best|N]

--out writes `images` (uint8, N x H x W x C, like the dataset's) and, for conditional models,
`labels` (balanced over the classes unless --label is given); --png draws them as a grid, one
class per row for conditional models. Give either or both.
"""

import io

import jax
import numpy as np
from absl import flags
from etils import epath

from common.run import entry
from common import parallel
from common.run import plots
from common.run import runs
from gan import options
from gan import players as players_lib

FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", None, "A GAN run's workdir.", required=True)
flags.DEFINE_integer("num", 100, "How many samples.", lower_bound=1)
flags.DEFINE_string("out", None, "The .npz file to write (images, and labels if conditional).")
flags.DEFINE_integer("label", None, "Draw only this class (conditional models).", lower_bound=0)
flags.DEFINE_string("png", None, "A PNG grid of the samples (one class per row if conditional).")
flags.DEFINE_integer("seed", 0, "Sampling seed.")
flags.DEFINE_string("step", "latest", "Checkpoint: latest, best or a step number.")


def _check_outputs(*paths: str | None) -> None:
  """Refuses, before any sampling, an output whose folder does not exist."""
  for path in filter(None, paths):
    if not epath.Path(path).parent.exists():
      raise runs.RunError(f"The folder of {path} does not exist; create it or write elsewhere.")


def main(argv):
  del argv
  if not (FLAGS.out or FLAGS.png):
    raise runs.RunError("Nothing to write: give --out=FILE.npz, --png=FILE.png, or both.")
  _check_outputs(FLAGS.out, FLAGS.png)
  run, players = players_lib.restore(FLAGS.workdir, parallel.make_mesh(),
                                     runs.parse_step(FLAGS.step))
  config, info = run.config, run.info
  if FLAGS.label is not None and not options.conditional(config):
    raise runs.RunError(f"--label needs a conditional model; {config.name} is unconditional.")
  if FLAGS.label is not None and FLAGS.label >= info.num_classes:
    raise runs.RunError(f"--label={FLAGS.label} is not a class of {info.name} "
                        f"(0..{info.num_classes - 1}).")
  images, labels = players_lib.generate(config, players, run.state, FLAGS.num,
                                        jax.random.PRNGKey(FLAGS.seed), FLAGS.label)
  conditional = options.conditional(config)
  if FLAGS.out:
    arrays = {"images": images, **({"labels": labels} if conditional else {})}
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    epath.Path(FLAGS.out).write_bytes(buffer.getvalue())
  if FLAGS.png:
    title = f"{config.name}, step {run.step}" + (
        f", {info.class_names[FLAGS.label]}" if FLAGS.label is not None else "")
    if conditional and FLAGS.label is None:
      placed, names = class_rows(images, labels, info.class_names)
      plots.save_grid(placed, FLAGS.png, len(names), title, row_labels=names)
    else:
      plots.save_grid(images, FLAGS.png, max(1, int(np.sqrt(FLAGS.num))), title)
  written = ", ".join(filter(None, (FLAGS.out, FLAGS.png)))
  print(f"Wrote {FLAGS.num} samples of {config.name} (step {run.step}): {written}")


def class_rows(images: np.ndarray, labels: np.ndarray,
               class_names: list[str]) -> tuple[np.ndarray, list[str]]:
  """Images reordered for a row-major grid with one class per row (blank cells where a class has
  fewer samples), and the rows' class names."""
  classes = sorted(set(np.asarray(labels).tolist()))
  cols = max(int(np.sum(labels == c)) for c in classes)
  placed = np.zeros((len(classes) * cols,) + images.shape[1:], images.dtype)
  for row, c in enumerate(classes):
    picked = images[labels == c]
    placed[row * cols: row * cols + len(picked)] = picked
  return placed, [class_names[c] for c in classes]


if __name__ == "__main__":
  entry.run_tool(main)
