"""Brute-force references for the GAN metrics, written from the papers' formulas with scipy's
full distance matrices and sqrtm: no chunks, no partitions, no eigen-decompositions."""

import warnings

import numpy as np
import scipy.linalg
import scipy.spatial


def frechet_distance(a, b) -> float:
  s_a, s_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
  with warnings.catch_warnings():  # a ReLU feature that never fires: singular, still accurate
    warnings.simplefilter("ignore", scipy.linalg.LinAlgWarning)
    root = scipy.linalg.sqrtm(s_a @ s_b)
    if not np.isfinite(root).all():  # newer scipy: NaN for a singular product; pytorch-fid's fix
      offset = 1e-6 * np.eye(len(s_a))
      root = scipy.linalg.sqrtm((s_a + offset) @ (s_b + offset))
    root = root.real
  return float(np.sum((a.mean(0) - b.mean(0)) ** 2) + np.trace(s_a + s_b) - 2 * np.trace(root))


def classifier_score(probs) -> float:
  """exp of the mean over samples x of KL(p(y|x) || p(y)), p(y) the mean over samples."""
  probs = np.asarray(probs, np.float64)
  marginal = [sum(p[k] for p in probs) / len(probs) for k in range(probs.shape[1])]
  kls = [sum(p[k] * np.log(p[k] / marginal[k]) for k in range(len(p)) if p[k] > 0)
         for p in probs]
  return float(np.exp(np.mean(kls)))


def radii(points, k: int) -> np.ndarray:
  """Each point's distance to its k-th nearest neighbour among the other points."""
  d = scipy.spatial.distance.cdist(points, points)
  np.fill_diagonal(d, np.inf)
  return np.sort(d, axis=1)[:, k - 1]


def precision_recall(real, fake, k: int = 3) -> tuple[float, float]:
  """Kynkaanniemi et al. 2019: f(x, manifold) = 1 if ||x - m|| <= r_k(m) for some m."""
  d = scipy.spatial.distance.cdist(real, fake)                       # [real, fake]
  precision = np.mean(np.any(d <= radii(real, k)[:, None], axis=0))
  recall = np.mean(np.any(d <= radii(fake, k)[None, :], axis=1))
  return float(precision), float(recall)


def density_coverage(real, fake, k: int = 5) -> tuple[float, float]:
  """Naeem et al. 2020, with prdc's strict `distance < radius`."""
  inside = scipy.spatial.distance.cdist(real, fake) < radii(real, k)[:, None]
  return float(inside.sum() / (k * len(fake))), float(np.mean(inside.any(axis=1)))
