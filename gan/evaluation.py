"""GAN evaluation with this project's own classifier: a `cnn` run on the same dataset.

    python -m gan.evaluate --workdir=runs/acgan [--classifier_workdir=runs/cnn] [--num=10000]

Every metric is computed on the classifier's features (its penultimate layer) or predictions,
for the generator's samples against the test split, and beside it the same metric for real
training images against the test split (`real`): how far from real the model is.
  fid                   Frechet distance of features
  classifier_score      exp E[KL(p(y|x) || p(y))], the Inception-score analogue
  precision, recall     improved precision and recall (k = 3)
  density, coverage     Naeem et al. 2020 (k = 5)
  class_histogram       fraction of samples predicted as each class (mode coverage)
  conditional_accuracy  conditional models: samples classified as the class they were drawn for
  intra_class_fd        conditional models: mean over classes of the per-class FD
  cas                   conditional models: the classification accuracy score (Ravuri and
                        Vinyals 2019), the test accuracy of a fresh course CNN trained on the
                        labelled samples only (`real`: trained on as many real images)
With Inception weights configured (config.inception_weights or $INCEPTION_WEIGHTS) the field's
metrics are added, prefixed inception_ (gan/inception_eval.py: FID, IS, KID, precision/recall,
density/coverage in pytorch-fid's Inception features), and the classifier becomes optional.
During training, `TrainingEvaluator` computes the cheap ones every eval_every_epochs (and
eval_inception_fid with config.train_inception_samples).
The protocol (classifier, sample counts, reference split, seed, generator weights and step) is
recorded with the numbers.
"""

import hashlib

import jax
import jax.numpy as jnp
import numpy as np
import optax

from common.data import datasets
from common.run import loop
from common import parallel
from common.run import reporting
from common.run import runs
from common.data import shards
from cnn import api as cnn_api
from cnn import options as cnn_options
from cnn import train as cnn_train
from gan import inception_eval
from gan import options
from gan import metrics
from gan import players as players_lib

MIN_SAMPLES = 10  # k-NN metrics need more samples than k; FD needs a covariance
EVAL_BATCH = 1000  # the CAS classifier's test batch, over all devices


def load_classifier(workdir: str, info: datasets.DatasetInfo, mesh):
  """(classify, protocol entries) of the classifier in workdir, checked against the dataset."""
  run, model = cnn_train.restore_classifier(workdir, mesh)
  if (run.info.name, run.info.shape) != (info.name, info.shape):
    raise runs.RunError(f"The classifier in {workdir} was trained on {run.info.name} "
                        f"{run.info.shape}, not {info.name} {info.shape}; pass a classifier of "
                        "this dataset with --classifier_workdir.")
  leaves = jax.tree.leaves(jax.device_get(run.state.params))
  digest = hashlib.sha1(b"".join(np.asarray(x).tobytes() for x in leaves)).hexdigest()[:12]
  saved = reporting.read_json(workdir, "results.json") or {}
  protocol = {"classifier_workdir": workdir, "classifier_step": run.step,
              "classifier_fingerprint": digest,
              "classifier_test_accuracy": saved.get("test", {}).get("accuracy")}
  return cnn_api.make_classify(model), protocol


def feature_metrics(feats, probs, labels, ref_feats, ref_labels, num_classes: int,
                    conditional: bool) -> dict:
  """Every metric of one sample set against the reference (test) set."""
  predicted = probs.argmax(-1)
  precision, recall = metrics.precision_recall(ref_feats, feats)
  density, coverage = metrics.density_coverage(ref_feats, feats)
  out = {"fid": metrics.frechet_distance(feats, ref_feats),
         "classifier_score": metrics.classifier_score(probs),
         "precision": precision, "recall": recall, "density": density, "coverage": coverage,
         "class_histogram": (np.bincount(predicted, minlength=num_classes) / len(predicted))
                            .round(4).tolist()}
  if conditional:
    out["conditional_accuracy"] = float(np.mean(predicted == labels))
    per_class, out["intra_class_fd"] = metrics.intra_class_fd(feats, labels, ref_feats,
                                                              ref_labels, num_classes)
    out["intra_class_fd_per_class"] = [round(v, 4) for v in per_class]
  return out


def classification_accuracy(info: datasets.DatasetInfo, images, labels, test, epochs: int,
                            seed: int = 0, batch: int = 100, mesh=None) -> float:
  """Test accuracy of the course CNN (Adam 1e-3) trained `epochs` epochs on (images, labels),
  through the loop's training core (loop.train_in_memory) and its padded evaluation."""
  mesh = mesh or parallel.make_mesh()
  batch = max(mesh.size, batch - batch % mesh.size)
  model_config = cnn_options.get_config().model  # model.name 'seed': the course's architecture
  model = cnn_train.build_model(model_config, info, jnp.float32, jax.random.PRNGKey(seed))
  task = cnn_train.make_task(model, optax.adam(1e-3), dtype="float32")
  train = shards.to_device(mesh, datasets.HostSplit(images, labels, len(labels)))
  state = loop.train_in_memory(task, train, mesh, batch_size=batch, num_epochs=epochs, seed=seed)
  per_device = max(1, EVAL_BATCH // mesh.size)
  test_split = shards.to_device(mesh, test, pad_to=per_device)
  evaluate = loop.make_evaluate(task, per_device * mesh.size)
  return loop.evaluate_split(evaluate, state, test_split)["accuracy"]


def evaluate(config, info: datasets.DatasetInfo, players, state, mesh, *,
             classifier_workdir: str | None = None, num: int | None = None,
             seed: int | None = None, step: int | None = None) -> dict:
  """All metrics for the generator in `state`, with real-data references and the protocol: the
  classifier's, and the Inception metrics (gan/inception_eval.py) when weights are configured.
  Without a classifier, the Inception metrics alone."""
  num = config.eval_samples if num is None else num
  if num < MIN_SAMPLES:
    raise runs.RunError(f"--num={num} samples are too few to evaluate; use at least "
                        f"{MIN_SAMPLES} (10000 is the usual count).")
  inc = inception_eval.from_config(config, mesh)
  try:
    classify, protocol = load_classifier(classifier_workdir or config.classifier_workdir, info,
                                         mesh)
  except runs.RunError as e:
    if inc is None:
      raise
    reporting.print_line(f"Inception metrics only: {e}")
    classify, protocol = None, {}
  _, host = datasets.load_host(config)
  seed = config.seed + 2 if seed is None else seed
  images, labels = players_lib.generate(config, players, state, num, jax.random.PRNGKey(seed))
  out = ({} if classify is None else
         classifier_metrics(config, info, classify, images, labels, host, num))
  if inc is not None:
    extra = inception_eval.evaluate(inc, images, host, seed)
    out.setdefault("real", {}).update(extra.pop("real"))
    protocol.update(extra.pop("protocol"))
    out.update(extra)
  test = host["test"]
  out["protocol"] = dict(protocol, num_samples=num, reference="test",
                         num_reference=int(min(num, len(test.labels))),
                         num_real=int(min(num, len(host["train"].labels))), sampling_seed=seed,
                         cas_epochs=config.cas_epochs,
                         generator="ema" if "g_ema" in state.model_state else "online",
                         step=int(state.step) if step is None else step)
  _report(out)
  return out


def classifier_metrics(config, info, classify, images, labels, host, num: int) -> dict:
  """The classifier's metrics of the samples and (under 'real') of real training images."""
  test, train = host["test"], host["train"]
  ref_feats, _ = classify(test.images[:num])
  conditional = options.conditional(config)
  out = feature_metrics(*classify(images), labels, ref_feats, test.labels[:num],
                        info.num_classes, conditional)
  real_feats, real_probs = classify(train.images[:num])
  out["real"] = feature_metrics(real_feats, real_probs, train.labels[:num], ref_feats,
                                test.labels[:num], info.num_classes, conditional)
  if conditional:
    out["cas"] = classification_accuracy(info, images, labels, test, config.cas_epochs)
    out["real"]["cas"] = classification_accuracy(info, train.images[:num], train.labels[:num],
                                                 test, config.cas_epochs)
  return out


def _report(out: dict) -> None:
  """One line per metric: the samples' value beside real images' value."""
  p = out["protocol"]
  inc = p.get("inception")
  source = "; ".join(([f"classifier {p['classifier_workdir']} against the test split"]
                      if "classifier_workdir" in p else []) +
                     ([f"Inception, {inc['resize']} resize, against the {inc['reference_split']}"
                       f" split"] if inc else []))
  lines = [f"Evaluation, {p['num_samples']} samples ({source}):"]
  for k, v in out.items():
    if isinstance(v, float):
      lines.append(f"  {k:22s} {v:10.4f}   real images: {out['real'][k]:.4f}")
  reporting.print_line("\n".join(lines))
  if max(out.get("class_histogram", [0])) > 0.5:
    reporting.print_line("Warning: mode collapse: over half of the samples are classified as one "
                         "class.")


class TrainingEvaluator:
  """Every eval_every_epochs, for the per-epoch record: the cheap classifier metrics (FD,
  classifier score, precision, recall, conditional accuracy) on config.train_eval_samples
  samples (off without a classifier), and eval_inception_fid on config.train_inception_samples
  (off without them)."""

  def __init__(self, config, info: datasets.DatasetInfo, players, mesh):
    self.config, self.players, self.classify, self.inception = config, players, None, None
    if config.train_inception_samples:  # a missing weights file stops here, before training
      self.inception = inception_eval.TrainingFID(config, mesh, datasets.load_host(config)[1])
    if config.train_eval_samples == 0:
      return
    try:
      self.classify, _ = load_classifier(config.classifier_workdir, info, mesh)
    except runs.RunError as e:
      reporting.print_line(f"No evaluation during training: {e}")
      return
    _, host = datasets.load_host(config)
    self.ref_feats, _ = self.classify(host["test"].images[:config.train_eval_samples])

  def __call__(self, state) -> dict:
    c, out = self.config, {}
    if self.inception is not None:
      images, _ = players_lib.generate(c, self.players, state, c.train_inception_samples,
                                       jax.random.PRNGKey(c.seed + 4))
      out.update(self.inception(images))
    if self.classify is None:
      return out
    images, labels = players_lib.generate(c, self.players, state, c.train_eval_samples,
                                          jax.random.PRNGKey(c.seed + 3))
    feats, probs = self.classify(images)
    precision, recall = metrics.precision_recall(self.ref_feats, feats)
    out.update({"eval_fid": metrics.frechet_distance(feats, self.ref_feats),
                "eval_classifier_score": metrics.classifier_score(probs),
                "eval_precision": precision, "eval_recall": recall})
    if options.conditional(c):
      out["eval_conditional_accuracy"] = float(np.mean(probs.argmax(-1) == labels))
    return out
