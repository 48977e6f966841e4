"""Evaluates a trained GAN with a classifier of the same dataset (metrics: gan/evaluation.py).

    python -m gan.evaluate --workdir=runs/acgan [--classifier_workdir=runs/cnn] [--num=10000]
        [--step=latest|best|N]

Prints every metric beside its value for real images, and writes them with their protocol to
the run's results.json under "eval".
"""

from absl import app, flags

from common import entry
from common import parallel
from common import reporting
from common import runs
from gan import evaluation
from gan import players as players_lib

FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", None, "A GAN run's workdir.", required=True)
flags.DEFINE_string("classifier_workdir", None, "A cnn run's workdir; default the config's.")
flags.DEFINE_integer("num", None, "Samples to draw; default config.eval_samples.")
flags.DEFINE_string("step", "latest", "Checkpoint: latest, best or a step number.")
flags.DEFINE_integer("seed", None, "Sampling seed; default config.seed + 2.")


def main(argv):
  del argv
  mesh = parallel.make_mesh()
  step = runs.parse_step(FLAGS.step)
  run, players = players_lib.restore(FLAGS.workdir, mesh, step)
  out = evaluation.evaluate(run.config, run.info, players, run.state, mesh,
                            classifier_workdir=FLAGS.classifier_workdir, num=FLAGS.num,
                            seed=FLAGS.seed, step=run.step)
  results = reporting.read_json(FLAGS.workdir, "results.json") or {}
  results["eval"] = out
  reporting.write_json(FLAGS.workdir, "results.json", results)


if __name__ == "__main__":
  entry.run_tool(main)
