"""GAN evaluation with this project's own MNIST classifier (a `cnn` run's workdir).

    python -m gan.evaluate --workdir=runs/acgan [--classifier_workdir=runs/cnn] [--num=10000]

Metrics, from classifier features (the penultimate layer) and predictions:
  fid               Frechet distance between features of samples and of the test images
  fid_train_floor   the same for real training images against the test images (the best reachable)
  classifier_score  exp E[KL(p(y|x) || p(y))], the Inception-score analogue (10 at best)
  class_histogram   fraction of samples predicted as each class (mode coverage)
  conditional_accuracy  for conditional models: samples classified as the label they were drawn for
"""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags

from common import checkpoint
from common import config as cfg
from common import data as data_lib
from common import parallel
from common import reporting
from cnn import train as cnn_train
from configs import gan_base
from gan import train as gan_train


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
  """||mu_a - mu_b||^2 + Tr(S_a + S_b - 2 (S_a S_b)^(1/2)) between two feature sets [N, F]."""
  a, b = a.astype(np.float64), b.astype(np.float64)
  mu_a, mu_b = a.mean(0), b.mean(0)
  s_a, s_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
  # Tr (S_a S_b)^(1/2) = Tr (S_a^(1/2) S_b S_a^(1/2))^(1/2), a symmetric PSD matrix: exact with
  # eigh even when a covariance is singular (a ReLU feature that never fires), where sqrtm warns.
  root_a = _sqrt_psd(s_a)
  inner = root_a @ s_b @ root_a
  tr_covmean = np.sum(np.sqrt(np.clip(np.linalg.eigvalsh((inner + inner.T) / 2), 0.0, None)))
  return float(np.sum((mu_a - mu_b) ** 2) + np.trace(s_a) + np.trace(s_b) - 2.0 * tr_covmean)


def _sqrt_psd(s: np.ndarray) -> np.ndarray:
  w, v = np.linalg.eigh(s)
  return (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T


def classifier_score(probs: np.ndarray) -> float:
  p_y = probs.mean(0, keepdims=True)
  kl = np.sum(probs * (np.log(probs + 1e-12) - np.log(p_y + 1e-12)), axis=1)
  return float(np.exp(kl.mean()))


def make_classify(model, batch: int = 1000):
  """uint8 images [N, ...] -> (features [N, F], probabilities [N, K]) from the classifier."""

  @jax.jit
  def apply(images):
    x = data_lib.to_float(images)
    for layer in model.layers[:-1]:
      x = layer(x, train=False)
    return x, jax.nn.softmax(model.layers[-1](x, train=False).astype(jnp.float32))

  def classify(images: np.ndarray):
    feats, probs = [], []
    for i in range(0, len(images), batch):
      f, p = apply(images[i:i + batch])
      feats.append(np.asarray(f))
      probs.append(np.asarray(p))
    return np.concatenate(feats), np.concatenate(probs)

  return classify


def generate(config, players, state, num: int, key, label: int | None = None, batch: int = 500):
  """num uint8 samples from the generator and their labels (balanced, or all `label`)."""
  labels = (np.full(num, label) if label is not None
            else np.arange(num) % config.model.num_classes).astype(np.int32)
  fn = jax.jit(lambda z, y: gan_train.to_uint8(players.sample(state, z, y)))
  out = []
  for i in range(0, num, batch):
    y = labels[i:i + batch]
    z, _ = gan_train.sample_latent(config, jax.random.fold_in(key, i), len(y))
    out.append(np.asarray(fn(z, y)))
  return np.concatenate(out), labels


def evaluate(config, players, state, mesh, workdir: str, classifier_workdir: str | None = None,
             num: int | None = None) -> dict:
  """The metrics above for the generator in `state`; prints them and returns them."""
  classifier_workdir = classifier_workdir or config.classifier_workdir
  clf_config, model = cnn_train.load_trained(classifier_workdir, mesh)
  if clf_config.dataset != config.dataset:
    raise FileNotFoundError(f"The classifier in {classifier_workdir} was trained on "
                            f"{clf_config.dataset}, not {config.dataset}.")
  num = num or config.eval_samples
  classify = make_classify(model)
  host = data_lib.load_host(config)
  test_f, _ = classify(host["test"].images[:num])
  train_f, _ = classify(host["train"].images[:num])
  images, labels = generate(config, players, state, num, jax.random.PRNGKey(config.seed + 2))
  feats, probs = classify(images)
  predicted = probs.argmax(-1)
  metrics = {
      "num_samples": num,
      "fid": frechet_distance(feats, test_f),
      "fid_train_floor": frechet_distance(train_f, test_f),
      "classifier_score": classifier_score(probs),
      "class_histogram": (np.bincount(predicted, minlength=probs.shape[1]) / num).round(4).tolist(),
  }
  if gan_train.conditional(config):
    metrics["conditional_accuracy"] = float(np.mean(predicted == labels))
  text = " - ".join(f"{k}: {v:.4f}" if isinstance(v, float) else f"{k}: {v}"
                    for k, v in metrics.items())
  reporting.print_line(f"Evaluation ({classifier_workdir}): {text}")
  if max(metrics["class_histogram"]) > 0.5:
    reporting.print_line("Warning: mode collapse: over half of the samples are classified as one "
                         "class.")
  return metrics


def restore(workdir: str, mesh):
  """(config, players, state, step) of the latest GAN checkpoint in workdir."""
  path = os.path.join(workdir, "config.json")
  if not os.path.exists(path):
    raise FileNotFoundError(f"No GAN run in {workdir} (no config.json): train one there first.")
  config = cfg.load_saved(path, gan_base.get_config())
  with open(os.path.join(workdir, "dataset.json")) as f:
    image_shape = tuple(json.load(f)["image_shape"])
  players, g_tx, d_tx = gan_train.build(config, image_shape, 1)
  task = gan_train.make_task(config, players, g_tx, d_tx, workdir)
  state, _, step = checkpoint.restore_latest(
      workdir, parallel.replicate(mesh, task.init(jax.random.PRNGKey(0))))
  return config, players, state, step


FLAGS = flags.FLAGS


def main(argv):
  del argv
  mesh = parallel.make_mesh()
  try:
    config, players, state, step = restore(FLAGS.workdir, mesh)
    metrics = evaluate(config, players, state, mesh, FLAGS.workdir, FLAGS.classifier_workdir,
                       FLAGS.num)
  except FileNotFoundError as e:
    raise SystemExit(f"Error: {e}") from None
  results_path = os.path.join(FLAGS.workdir, "results.json")
  results = json.load(open(results_path)) if os.path.exists(results_path) else {}
  results["eval"] = dict(metrics, step=step)
  reporting.write_json(FLAGS.workdir, "results.json", results)


if __name__ == "__main__":
  flags.DEFINE_string("workdir", None, "A GAN run's workdir.", required=True)
  flags.DEFINE_string("classifier_workdir", None, "A cnn run's workdir; default config's.")
  flags.DEFINE_integer("num", None, "Samples to draw; default config.eval_samples.")
  app.run(main)
