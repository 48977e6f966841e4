"""GAN evaluation metrics on classifier features [N, F], in numpy.

  frechet_distance   FID between two feature sets (frechet_distance_stats: of mean, covariance)
  classifier_score   the Inception-score analogue of class probabilities
  inception_score    IS of logits: mean and std over splits (Salimans et al. 2016)
  kernel_inception_distance  KID: unbiased MMD^2, cubic kernel, over subsets (Binkowski et al.)
  precision_recall   improved precision and recall (Kynkaanniemi et al. 2019)
  density_coverage   density and coverage (Naeem et al. 2020)
  intra_class_fd     the Frechet distance per class, for conditional generators

The k-NN metrics compute distances in float64, `chunk` rows at a time, so 10,000 x 10,000
samples never build the full distance matrix (1,000 rows against 10,000 samples: 80 MB).
"""

import numpy as np


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
  """||mu_a - mu_b||^2 + Tr(S_a + S_b - 2 (S_a S_b)^(1/2)) between two feature sets [N, F]."""
  a, b = a.astype(np.float64), b.astype(np.float64)
  return frechet_distance_stats(a.mean(0), np.cov(a, rowvar=False), b.mean(0),
                                np.cov(b, rowvar=False))


def frechet_distance_stats(mu_a, s_a, mu_b, s_b) -> float:
  """The Frechet distance of two Gaussians (mean, covariance), in float64.

  Tr (S_a S_b)^(1/2) = Tr (S_a^(1/2) S_b S_a^(1/2))^(1/2), a symmetric PSD matrix: exact with
  eigh even when a covariance is singular (a ReLU feature that never fires, fewer samples than
  features), where scipy's sqrtm of the non-symmetric S_a S_b returns "imaginary components".
  """
  mu_a, mu_b = np.asarray(mu_a, np.float64), np.asarray(mu_b, np.float64)
  s_a, s_b = np.atleast_2d(np.asarray(s_a, np.float64)), np.atleast_2d(np.asarray(s_b, np.float64))
  root_a = _sqrt_psd(s_a)
  inner = root_a @ s_b @ root_a
  tr_covmean = np.sum(np.sqrt(np.clip(np.linalg.eigvalsh((inner + inner.T) / 2), 0.0, None)))
  return float(np.sum((mu_a - mu_b) ** 2) + np.trace(s_a) + np.trace(s_b) - 2.0 * tr_covmean)


def _sqrt_psd(s: np.ndarray) -> np.ndarray:
  w, v = np.linalg.eigh((s + s.T) / 2)
  return (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T


def classifier_score(probs: np.ndarray) -> float:
  p_y = probs.mean(0, keepdims=True)
  kl = np.sum(probs * (np.log(probs + 1e-12) - np.log(p_y + 1e-12)), axis=1)
  return float(np.exp(kl.mean()))


def inception_score(logits: np.ndarray, splits: int = 10,
                    shuffle_seed: int | None = None) -> tuple[float, float]:
  """(mean, std) over `splits` consecutive parts of exp E_x[KL(p(y|x) || p(y))], p = softmax.

  As the original code (and torch-fidelity, whose default shuffles first with
  np.random.RandomState(2020).permutation: pass shuffle_seed=2020); std with ddof 0, float64.
  """
  x = np.asarray(logits, np.float64)
  if shuffle_seed is not None:
    x = x[np.random.RandomState(shuffle_seed).permutation(len(x))]
  log_p = x - x.max(1, keepdims=True)
  log_p -= np.log(np.exp(log_p).sum(1, keepdims=True))
  n, scores = len(x), []
  for i in range(splits):
    part = log_p[i * n // splits:(i + 1) * n // splits]
    p = np.exp(part)
    with np.errstate(divide="ignore", invalid="ignore"):  # p = 0 terms are 0 (0 log 0)
      kl = np.sum(np.where(p > 0, p * (part - np.log(p.mean(0, keepdims=True))), 0.0), axis=1)
    scores.append(float(np.exp(kl.mean())))
  return float(np.mean(scores)), float(np.std(scores))


def kernel_inception_distance(a: np.ndarray, b: np.ndarray, subsets: int = 100,
                              subset_size: int = 1000, seed: int = 2020) -> tuple[float, float]:
  """(mean, std) over `subsets` random subsets of the unbiased MMD^2 with the kernel
  k(x, y) = (x.y / F + 1)^3, as torch-fidelity (the same RandomState draws, std with ddof 0);
  the subset size is capped at the smaller set's size, where torch-fidelity refuses."""
  m = min(subset_size, len(a), len(b))
  rng, mmds = np.random.RandomState(seed), []
  for _ in range(subsets):  # float64 subsets: a 50,000-image reference is never copied whole
    x = np.asarray(a[rng.choice(len(a), m, replace=False)], np.float64)
    y = np.asarray(b[rng.choice(len(b), m, replace=False)], np.float64)
    k = lambda u, v: (u @ v.T / u.shape[1] + 1.0) ** 3
    k_xx, k_yy, k_xy = k(x, x), k(y, y), k(x, y)
    within = (k_xx.sum() - np.trace(k_xx) + k_yy.sum() - np.trace(k_yy)) / (m * (m - 1))
    mmds.append(within - 2.0 * k_xy.sum() / (m * m))
  return float(np.mean(mmds)), float(np.std(mmds))


def _distance_blocks(x: np.ndarray, y: np.ndarray, chunk: int):
  """Yields (rows, Euclidean distances [len(rows), len(y)]) for `chunk` rows of x at a time."""
  x, y = x.astype(np.float64), y.astype(np.float64)
  y_sq = np.sum(y ** 2, axis=1)
  for start in range(0, len(x), chunk):
    rows = np.arange(start, min(start + chunk, len(x)))
    squared = np.sum(x[rows] ** 2, axis=1)[:, None] + y_sq[None, :] - 2.0 * x[rows] @ y.T
    yield rows, np.sqrt(np.clip(squared, 0.0, None))


def _knn_radii(x: np.ndarray, k: int, chunk: int) -> np.ndarray:
  """Each sample's distance to its k-th nearest neighbour among the other samples of x.

  As prdc: index k of each row of the distance matrix sorted with its zero self-distance (prdc
  takes the largest of the k + 1 smallest, by np.argpartition), i.e. the k-th nearest other
  sample; a duplicate of a sample counts as a neighbour at distance 0.
  """
  radii = np.empty(len(x))
  for rows, d in _distance_blocks(x, x, chunk):
    radii[rows] = np.partition(d, k, axis=1)[:, k]
  return radii


def _ball_counts(centres: np.ndarray, radii: np.ndarray, points: np.ndarray, strict: bool,
                 chunk: int) -> tuple[np.ndarray, np.ndarray]:
  """(points inside each ball B(centres_i, radii_i), balls containing each point).

  Inside is distance < radius when `strict`, else distance <= radius.
  """
  inside = np.less if strict else np.less_equal
  per_ball, per_point = np.zeros(len(centres), np.int64), np.zeros(len(points), np.int64)
  for rows, d in _distance_blocks(centres, points, chunk):
    hits = inside(d, radii[rows, None])
    per_ball[rows] = hits.sum(1)
    per_point += hits.sum(0)
  return per_ball, per_point


def precision_recall(real: np.ndarray, fake: np.ndarray, k: int = 3,
                     chunk: int = 1000) -> tuple[float, float]:
  """(precision, recall) of Kynkaanniemi et al. 2019.

  Precision: the fraction of fake samples inside at least one real sample's k-NN ball; recall:
  the fraction of real samples inside at least one fake sample's ball. Inside is distance <=
  radius, as the paper's formula.
  """
  _, fake_hits = _ball_counts(real, _knn_radii(real, k, chunk), fake, False, chunk)
  _, real_hits = _ball_counts(fake, _knn_radii(fake, k, chunk), real, False, chunk)
  return float(np.mean(fake_hits > 0)), float(np.mean(real_hits > 0))


def density_coverage(real: np.ndarray, fake: np.ndarray, k: int = 5,
                     chunk: int = 1000) -> tuple[float, float]:
  """(density, coverage) of Naeem et al. 2020, as their `prdc` code (inside: distance < radius).

  density = sum over fake j and real i of 1[fake_j in B(real_i, r_i)] / (k M);
  coverage = the fraction of real balls B(real_i, r_i) holding at least one fake sample.
  """
  per_ball, per_fake = _ball_counts(real, _knn_radii(real, k, chunk), fake, True, chunk)
  return float(per_fake.sum() / (k * len(fake))), float(np.mean(per_ball > 0))


def intra_class_fd(fake: np.ndarray, fake_labels: np.ndarray, real: np.ndarray,
                   real_labels: np.ndarray, num_classes: int) -> tuple[list[float], float]:
  """(FD per class, their mean): samples drawn for class c against real images of class c.

  A class with fewer than 2 samples on either side has no covariance: its FD is NaN and it is
  left out of the mean (NaN when every class is).
  """
  per_class = []
  for c in range(num_classes):
    a, b = fake[fake_labels == c], real[real_labels == c]
    per_class.append(frechet_distance(a, b) if min(len(a), len(b)) >= 2 else float("nan"))
  defined = [v for v in per_class if not np.isnan(v)]
  return per_class, float(np.mean(defined)) if defined else float("nan")
