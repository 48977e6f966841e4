"""Evaluates a trained GAN with a classifier of the same dataset (metrics: gan/evaluation.py).

    python -m gan.evaluate --workdir=runs/acgan [--classifier_workdir=runs/cnn] [--num=10000]
        [--step=latest|best|N] [--inception_weights=pt_inception-2015-12-05-6726825d.pth]
        [--inception_resize=pytorch_fid|clean]

With Inception weights (the flag, the run's config.inception_weights or $INCEPTION_WEIGHTS) it
adds the Inception FID, IS, KID, precision/recall and density/coverage (gan/inception_eval.py),
and needs no classifier. Prints every metric beside its value for real images, and writes them
with their protocol to the run's results.json under "eval".
"""

from absl import flags

from common.run import entry
from common import parallel
from common.run import reporting
from common.run import runs
from gan import evaluation
from gan import inception_options
from gan import players as players_lib

FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", None, "A GAN run's workdir.", required=True)
flags.DEFINE_string("classifier_workdir", None, "A cnn run's workdir; default the config's.")
flags.DEFINE_integer("num", None, "Samples to draw; default config.eval_samples.")
flags.DEFINE_string("step", "latest", "Checkpoint: latest, best or a step number.")
flags.DEFINE_integer("seed", None, "Sampling seed; default config.seed + 2.")
flags.DEFINE_string("inception_weights", None, "pytorch-fid's Inception weights file; default "
                    "the run's config.inception_weights, else $INCEPTION_WEIGHTS.")
flags.DEFINE_enum("inception_resize", None, list(inception_options.RESIZES),
                  "Resize convention of the Inception metrics; default the run's config's.")


def main(argv):
  del argv
  mesh = parallel.make_mesh()
  step = runs.parse_step(FLAGS.step)
  run, players = players_lib.restore(FLAGS.workdir, mesh, step)
  for name in ("inception_weights", "inception_resize"):
    if getattr(FLAGS, name) is not None:
      run.config[name] = getattr(FLAGS, name)
  out = evaluation.evaluate(run.config, run.info, players, run.state, mesh,
                            classifier_workdir=FLAGS.classifier_workdir, num=FLAGS.num,
                            seed=FLAGS.seed, step=run.step)
  results = reporting.read_json(FLAGS.workdir, "results.json") or {}
  results["eval"] = out
  reporting.write_json(FLAGS.workdir, "results.json", results)


if __name__ == "__main__":
  entry.run_tool(main)
