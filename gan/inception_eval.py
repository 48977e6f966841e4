"""The field's GAN metrics: Inception FID, IS, KID, precision/recall and density/coverage, in the
features of pytorch-fid's Inception (gan/inception.py), computed when weights are configured.

  inception_fid                 FID of pool3 features against the reference split (all of it, or
                                config.inception_reference_samples), or against a published
                                pytorch-fid .npz (config.inception_reference_stats)
  inception_is, _is_std         Inception score: 10 splits, mean and std (unbiased logits)
  inception_kid, _kid_std       KID: 100 subsets of min(1000, n) samples (torch-fidelity's)
  inception_precision, _recall  k = 3, against as many reference images as samples
  inception_density, _coverage  k = 5, idem
The `real` values are the same metrics for as many images of the other split. Reference
features are computed once and kept beside the data, in <data_dir>/inception_stats/, named by
dataset, split, image count, resize convention and weights hash; each file records those and a
hash of the images, and a file whose record does not match is recomputed, never used.
"""

import hashlib
import io
import json
import os

import numpy as np
from etils import epath

from common import config as cfg
from common.data import datasets
from common.run import reporting
from gan import inception
from gan import inception_options
from gan import inception_weights
from gan import metrics

CACHE_DIR = "inception_stats"
CACHE_FORMAT = 1
FULL_RANK = 2048  # samples for a full-rank pool3 covariance
IS_SPLITS, KID_SUBSETS, KID_SUBSET_SIZE, PR_K, DC_K = 10, 100, 1000, 3, 5


class Inception:
  """The configured weights, their extractor, the published statistics if any; all checked
  here, before any compilation."""

  def __init__(self, config, mesh):
    self.config = config
    params, self.record = inception_weights.load(inception_options.weights_path(config))
    self.published = read_published(config.inception_reference_stats)
    self.extract = inception.Extractor(params, mesh, config.inception_resize,
                                       config.inception_batch_size)

  def features(self, split: str, images: np.ndarray) -> tuple[dict, str]:
    """({'pool3', 'logits_unbiased', 'mu', 'sigma'}, cache file) of real images, cached."""
    c = self.config
    record = {"format": CACHE_FORMAT, "dataset": c.dataset, "split": split,
              "num": len(images), "resize": c.inception_resize,
              "weights_sha256": self.record["inception_weights_sha256"],
              "images_sha1": hashlib.sha1(np.ascontiguousarray(images).tobytes()).hexdigest()}
    name = (f"{c.dataset.replace('/', '_').replace(':', '_')}_{split}_{len(images)}_"
            f"{c.inception_resize}_{record['weights_sha256'][:12]}.npz")
    path = os.path.join(datasets.data_dir(c), CACHE_DIR, name)
    kept = read_cache(path, record)
    if kept is None:
      kept = with_stats(self.extract(images))
      if reporting.is_writer():
        write_cache(path, record, kept)
    return kept, path


def from_config(config, mesh) -> Inception | None:
  return Inception(config, mesh) if inception_options.weights_path(config) else None


def with_stats(out: dict) -> dict:
  pool = out["pool3"].astype(np.float64)
  return {"pool3": out["pool3"], "logits_unbiased": out["logits_unbiased"],
          "mu": pool.mean(0), "sigma": np.cov(pool, rowvar=False)}


def read_published(path: str) -> tuple[np.ndarray, np.ndarray] | None:
  """(mu, sigma) of a pytorch-fid statistics .npz, checked; None for ''."""
  if not path:
    return None
  try:
    with np.load(os.path.expanduser(path)) as f:
      mu, sigma = f["mu"].astype(np.float64), f["sigma"].astype(np.float64)
  except (OSError, KeyError, ValueError) as e:
    raise cfg.ConfigError(f"config.inception_reference_stats={path!r} is not a pytorch-fid "
                          f"statistics file (.npz with mu and sigma): {e}") from None
  if mu.shape != (inception.FEATURES,) or sigma.shape != (inception.FEATURES,) * 2:
    raise cfg.ConfigError(f"config.inception_reference_stats={path!r} holds mu {mu.shape} and "
                          f"sigma {sigma.shape}, not pool3 statistics (2048,), (2048, 2048).")
  return mu, sigma


def read_cache(path: str, record: dict) -> dict | None:
  """The kept features if the file exists and matches `record` (and itself); else None."""
  p = epath.Path(path)
  if not p.exists():
    return None
  try:
    with np.load(io.BytesIO(p.read_bytes())) as f:
      kept, saved = {k: f[k] for k in ("pool3", "logits_unbiased", "mu", "sigma")}, \
          json.loads(str(f["record"]))
  except (OSError, KeyError, ValueError) as e:
    reporting.print_line(f"Ignoring the unreadable reference statistics {path} ({e}); "
                         "recomputing them.")
    return None
  consistent = (len(kept["pool3"]) == record["num"] and
                np.allclose(kept["pool3"].astype(np.float64).mean(0), kept["mu"], atol=1e-6))
  if saved != record or not consistent:
    what = [k for k in record if saved.get(k) != record[k]] or ["features and mean"]
    reporting.print_line(f"Ignoring the reference statistics {path}: its {', '.join(what)} "
                         "do not match; recomputing them.")
    return None
  return kept


def write_cache(path: str, record: dict, kept: dict) -> None:
  buffer = io.BytesIO()
  np.savez(buffer, record=json.dumps(record, sort_keys=True), **kept)
  p = epath.Path(path)
  p.parent.mkdir(parents=True, exist_ok=True)
  tmp = p.parent / (p.name + ".tmp")
  tmp.write_bytes(buffer.getvalue())
  tmp.replace(p)


def sample_metrics(out: dict, reference: dict, mu, sigma) -> dict:
  """Every Inception metric of one image set's features `out` against the reference."""
  pool, ref = out["pool3"], reference["pool3"]
  stats = with_stats(out)
  is_mean, is_std = metrics.inception_score(out["logits_unbiased"], IS_SPLITS)
  kid, kid_std = metrics.kernel_inception_distance(pool, ref, KID_SUBSETS, KID_SUBSET_SIZE)
  precision, recall = metrics.precision_recall(ref[:len(pool)], pool, PR_K)
  density, coverage = metrics.density_coverage(ref[:len(pool)], pool, DC_K)
  return {"inception_fid": metrics.frechet_distance_stats(stats["mu"], stats["sigma"], mu, sigma),
          "inception_is": is_mean, "inception_is_std": is_std, "inception_kid": kid,
          "inception_kid_std": kid_std, "inception_precision": precision,
          "inception_recall": recall, "inception_density": density,
          "inception_coverage": coverage}


def warn_few(num: int) -> None:
  if num < FULL_RANK:
    reporting.print_line(
        f"Warning: Inception FID from {num} < {FULL_RANK} samples: the pool3 covariance is "
        "singular; the FID is finite but biased upward and not comparable to papers (which "
        "use 10,000 or 50,000 samples).")


def reference_split(config, host: dict) -> tuple[str, str, np.ndarray]:
  """(reference split, the other split, the reference images)."""
  split = config.inception_reference_split
  other = "test" if split == "train" else "train"
  return split, other, host[split].images[:config.inception_reference_samples or None]


def evaluate(inc: Inception, images: np.ndarray, host: dict, seed: int) -> dict:
  """{metric: value, 'real': {metric: value}, 'protocol': {...}} for the samples `images`."""
  c, num = inc.config, len(images)
  split, other, ref_images = reference_split(c, host)
  reference, ref_file = inc.features(split, ref_images)
  mu, sigma = inc.published or (reference["mu"], reference["sigma"])
  real, real_file = inc.features(other, host[other].images[:num])
  warn_few(num)
  out = sample_metrics(with_stats(inc.extract(images)), reference, mu, sigma)
  out["real"] = sample_metrics(real, reference, mu, sigma)
  out["protocol"] = {"inception": dict(
      inc.record, resize=c.inception_resize, num_samples=num, sampling_seed=seed,
      reference_split=split, num_reference=len(ref_images), reference_cache=ref_file,
      fid_reference_stats=c.inception_reference_stats or None,
      fid_reference_stats_sha256=(
          inception_weights.sha256(os.path.expanduser(c.inception_reference_stats))
          if c.inception_reference_stats else None), real_split=other,
      num_real=len(real["pool3"]), real_cache=real_file, is_splits=IS_SPLITS,
      kid_subsets=KID_SUBSETS, kid_subset_size=min(KID_SUBSET_SIZE, num, len(ref_images)),
      pr_k=PR_K, dc_k=DC_K, num_pr_reference=min(num, len(ref_images)))}
  return out


class TrainingFID:
  """eval_inception_fid of config.train_inception_samples samples, every eval_every_epochs."""

  def __init__(self, config, mesh, host: dict):
    self.inc = Inception(config, mesh)
    split, _, ref_images = reference_split(config, host)
    reference, _ = self.inc.features(split, ref_images)
    self.mu, self.sigma = self.inc.published or (reference["mu"], reference["sigma"])
    warn_few(config.train_inception_samples)

  def __call__(self, images: np.ndarray) -> dict:
    stats = with_stats(self.inc.extract(images))
    return {"eval_inception_fid": metrics.frechet_distance_stats(stats["mu"], stats["sigma"],
                                                                 self.mu, self.sigma)}
