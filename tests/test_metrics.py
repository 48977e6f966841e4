"""GAN metrics against brute-force loops written from the papers' formulas and hand-made cases."""

import numpy as np
import pytest

import metric_refs
from gan import metrics

SEEDS = (0, 1, 2, 3)


def test_frechet_distance_and_classifier_score():
  rng = np.random.RandomState(0)
  a, b = rng.normal(size=(2000, 8)), rng.normal(size=(2000, 8)) + 1.0
  assert metrics.frechet_distance(a, a) < 1e-6
  assert np.isclose(metrics.frechet_distance(a, b), 8.0, rtol=0.15)
  # Against the textbook formula with scipy's sqrtm, on correlated features.
  c, d = a @ rng.normal(size=(8, 8)), b @ rng.normal(size=(8, 8))
  assert np.isclose(metrics.frechet_distance(c, d), _textbook_fd(c, d), rtol=1e-8)
  # A feature that never fires (singular covariances) adds nothing and breaks nothing.
  dead = lambda x: np.concatenate([x, np.zeros((len(x), 1))], 1)  # pylint: disable=g-long-lambda
  assert np.isclose(metrics.frechet_distance(dead(c), dead(d)), _textbook_fd(c, d), rtol=1e-8)
  onehot = np.eye(10)[np.arange(1000) % 10]
  assert np.isclose(metrics.classifier_score(onehot), 10.0, rtol=1e-9)
  assert np.isclose(metrics.classifier_score(np.full((100, 10), 0.1)), 1.0)


_textbook_fd = metric_refs.frechet_distance


def _probabilities(seed, n=60, num_classes=7):
  """Class probabilities with unequal marginals: no axis of the array averages like another."""
  rng = np.random.RandomState(seed)
  return rng.dirichlet(rng.uniform(0.2, 3.0, num_classes), size=n)


@pytest.mark.parametrize("seed", SEEDS)
def test_classifier_score_equals_the_brute_force_formula(seed):
  probs = _probabilities(seed)
  want = metric_refs.classifier_score(probs)
  assert 1.2 < want < 7.0
  assert metrics.classifier_score(probs) == pytest.approx(want, rel=1e-7)


def test_classifier_score_of_collapsed_and_of_perfect_generators():
  one_class = np.eye(10)[np.full(500, 3)]
  assert metrics.classifier_score(one_class) == pytest.approx(1.0)  # collapsed: one class only
  same = np.repeat(_probabilities(0, n=1, num_classes=10), 200, axis=0)
  assert metrics.classifier_score(same) == pytest.approx(1.0)       # every sample alike
  two = np.eye(10)[np.arange(300) % 2]
  assert metrics.classifier_score(two) == pytest.approx(2.0, rel=1e-9)


def _distance(u, v):
  return float(np.sqrt(np.sum((u - v) ** 2)))


def _radii(points, k):
  """Each point's distance to its k-th nearest neighbour among the other points."""
  return [sorted(_distance(p, q) for j, q in enumerate(points) if j != i)[k - 1]
          for i, p in enumerate(points)]


def _reference_precision_recall(real, fake, k):
  """Kynkaanniemi et al. 2019: f(x, manifold) = 1 if ||x - m|| <= r_k(m) for some m."""
  real_r, fake_r = _radii(real, k), _radii(fake, k)
  in_real = [any(_distance(f, r) <= rad for r, rad in zip(real, real_r)) for f in fake]
  in_fake = [any(_distance(r, f) <= rad for f, rad in zip(fake, fake_r)) for r in real]
  return np.mean(in_real), np.mean(in_fake)


def _reference_density_coverage(real, fake, k):
  """Naeem et al. 2020, with prdc's strict `distance < radius`."""
  radii = _radii(real, k)
  inside = [[_distance(f, r) < rad for f in fake] for r, rad in zip(real, radii)]
  density = sum(sum(row) for row in inside) / (k * len(fake))
  return density, np.mean([any(row) for row in inside])


def _real_and_fake(seed):
  """Overlapping but different clouds, so that no metric is 0 or 1."""
  rng = np.random.RandomState(seed)
  dim = 3 + seed % 3
  real = rng.normal(size=(47, dim))
  fake = 1.3 * rng.normal(size=(53, dim)) + 1.0
  return real.astype(np.float32), fake.astype(np.float32)


@pytest.mark.parametrize("seed", SEEDS)
def test_precision_recall_equals_the_brute_force_formula(seed):
  real, fake = _real_and_fake(seed)
  expected = _reference_precision_recall(real.astype(np.float64), fake.astype(np.float64), 3)
  assert all(0.0 < v < 1.0 for v in expected)
  assert metrics.precision_recall(real, fake, k=3) == pytest.approx(expected)


@pytest.mark.parametrize("seed", SEEDS)
def test_density_coverage_equals_the_brute_force_formula(seed):
  real, fake = _real_and_fake(seed)
  expected = _reference_density_coverage(real.astype(np.float64), fake.astype(np.float64), 5)
  assert all(0.0 < v < 1.0 for v in expected)
  assert metrics.density_coverage(real, fake, k=5) == pytest.approx(expected)


@pytest.mark.parametrize("seed", SEEDS)
def test_identical_sets_are_fully_precise_recalled_and_covered(seed):
  real, _ = _real_and_fake(seed)
  assert metrics.precision_recall(real, real.copy()) == (1.0, 1.0)
  density, coverage = metrics.density_coverage(real, real.copy())
  assert coverage == 1.0
  assert density == pytest.approx(metric_refs.density_coverage(real, real.copy())[0])


def test_a_fake_set_far_away_scores_zero_everywhere():
  real, fake = _real_and_fake(1)
  far = fake + 1000.0
  assert metrics.precision_recall(real, far) == (0.0, 0.0)
  assert metrics.density_coverage(real, far) == (0.0, 0.0)


def test_one_dimensional_hand_case_fixes_k_and_the_ball_boundary():
  # Real 0, 1, 3, 6 with k = 1: radii 1, 1, 2, 3 (the nearest OTHER point).
  # Fake -1 is at distance exactly 1 from real 0: inside for precision (<=), outside for
  # density and coverage (<). Fake 10 is in no ball. Fake radii (k = 1): 11 and 11, which
  # hold every real point (all within 7 of -1).
  real = np.array([[0.0], [1.0], [3.0], [6.0]])
  fake = np.array([[-1.0], [10.0]])
  assert metrics.precision_recall(real, fake, k=1) == (0.5, 1.0)
  assert metrics.density_coverage(real, fake, k=1) == (0.0, 0.0)
  # k = 2: radii 3, 2, 3, 5. Fake -1 is inside the ball of 0 only (1 < 3; 2 < 2 fails for
  # real 1), fake 10 inside the ball of 6 only (4 < 5): density 2 / (k M) = 2 / (2 * 2), and
  # 2 of the 4 balls are covered.
  assert metrics.density_coverage(real, fake, k=2) == (2 / (2 * 2), 2 / 4)


@pytest.mark.parametrize("chunk", [1, 7, 20])
def test_chunked_equals_unchunked_when_chunks_do_not_divide_n(chunk):
  real, fake = _real_and_fake(2)  # 47 real, 53 fake: no chunk size above divides both
  whole = len(real) + len(fake)
  np.testing.assert_allclose(metrics._knn_radii(real, 3, chunk), metrics._knn_radii(real, 3, whole))
  radii = metrics._knn_radii(real, 5, whole)
  for got, want in zip(metrics._ball_counts(real, radii, fake, True, chunk),
                       metrics._ball_counts(real, radii, fake, True, whole)):
    np.testing.assert_array_equal(got, want)
  assert (metrics.precision_recall(real, fake, chunk=chunk)
          == pytest.approx(metrics.precision_recall(real, fake, chunk=whole)))
  assert (metrics.density_coverage(real, fake, chunk=chunk)
          == pytest.approx(metrics.density_coverage(real, fake, chunk=whole)))


def _labelled(seed, num_classes=3, per_class=30, dim=4):
  rng = np.random.RandomState(seed)
  labels = np.repeat(np.arange(num_classes), per_class)
  return rng.normal(size=(len(labels), dim)) + labels[:, None], labels


@pytest.mark.parametrize("seed", SEEDS)
def test_intra_class_fd_equals_the_textbook_formula_per_class(seed):
  real, real_labels = _labelled(seed)
  fake, fake_labels = _labelled(seed + 100)
  fake = fake * 1.5
  per_class, mean = metrics.intra_class_fd(fake, fake_labels, real, real_labels, 3)
  expected = [_textbook_fd(fake[fake_labels == c], real[real_labels == c]) for c in range(3)]
  np.testing.assert_allclose(per_class, expected, rtol=1e-6)
  assert np.isclose(mean, np.mean(expected), rtol=1e-6)


def test_intra_class_fd_of_identical_sets_and_of_a_shifted_class():
  real, labels = _labelled(0)
  per_class, _ = metrics.intra_class_fd(real, labels, real, labels, 3)
  np.testing.assert_allclose(per_class, 0.0, atol=1e-9)
  shift = 2.5
  fake = real.copy()
  fake[labels == 1, 0] += shift  # same covariance, mean moved by `shift` in one feature
  per_class, mean = metrics.intra_class_fd(fake, labels, real, labels, 3)
  np.testing.assert_allclose(per_class, [0.0, shift ** 2, 0.0], atol=1e-9)
  assert np.isclose(mean, shift ** 2 / 3)


def test_intra_class_fd_reports_thin_classes_as_nan_and_leaves_them_out_of_the_mean():
  real, labels = _labelled(0, num_classes=4)
  fake_labels = labels.copy()
  fake_labels[labels == 2] = 0
  fake_labels[np.flatnonzero(labels == 2)[0]] = 2  # one sample drawn for class 2
  per_class, mean = metrics.intra_class_fd(real, fake_labels, real, labels, 5)
  assert np.isnan(per_class[2]) and np.isnan(per_class[4])  # 1 and 0 samples
  defined = [per_class[c] for c in (0, 1, 3)]
  assert not np.any(np.isnan(defined))
  assert np.isclose(mean, np.mean(defined))
  assert np.isnan(metrics.intra_class_fd(real[:1], labels[:1], real, labels, 4)[1])


@pytest.mark.parametrize("seed", SEEDS[:2])
def test_feature_metrics_equal_the_references_with_real_and_fake_in_their_places(seed):
  from gan import evaluation  # pylint: disable=g-import-not-at-top
  ref, feats = _real_and_fake(seed)
  ref, feats = ref.astype(np.float64), feats.astype(np.float64)
  rng = np.random.RandomState(seed)
  probs, labels = _probabilities(seed, n=len(feats), num_classes=3), rng.randint(0, 3, len(feats))
  ref_labels = rng.randint(0, 3, len(ref))
  out = evaluation.feature_metrics(feats, probs, labels, ref, ref_labels, 3, conditional=True)
  assert out["fid"] == pytest.approx(metric_refs.frechet_distance(feats, ref), rel=1e-6)
  assert out["classifier_score"] == pytest.approx(metric_refs.classifier_score(probs), rel=1e-7)
  precision, recall = metric_refs.precision_recall(ref, feats)
  density, coverage = metric_refs.density_coverage(ref, feats)
  assert precision != recall and density != coverage
  assert [out[k] for k in ("precision", "recall", "density", "coverage")] == pytest.approx(
      [precision, recall, density, coverage])
  predicted = probs.argmax(1)
  assert out["class_histogram"] == pytest.approx(
      [np.mean(predicted == c) for c in range(3)], abs=5e-5)
  assert out["conditional_accuracy"] == pytest.approx(np.mean(predicted == labels))
  per_class = [metric_refs.frechet_distance(feats[labels == c], ref[ref_labels == c])
               for c in range(3)]
  assert out["intra_class_fd"] == pytest.approx(np.mean(per_class), rel=1e-6)
