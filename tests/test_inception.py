"""The Inception metrics against the reference implementations on the same weights.

tests/data/inception_golden.npz holds pytorch-fid's and torch-fidelity's outputs (made by
scripts/inception_golden.py with torch): pool3 features and logits of pytorch-fid's FID Inception
with gan.inception_weights.random_state_dict(seed) weights, for both resize conventions; the
resizes themselves (torch's F.interpolate, PIL's bicubic); FD, IS and KID of seeded feature
sets. The inputs are regenerated here from the same seeds, so no torch is needed.
"""

import importlib.util
import json
import os
import pickle
import zipfile

import numpy as np
import pytest
import scipy.linalg
from ml_collections import ConfigDict

from common.data import datasets
from common import parallel
from common.config import ConfigError
from gan import inception
from gan import inception_eval
from gan import inception_weights as iw
from gan import metrics
from conftest import REPO, run_module

DATA = os.path.join(REPO, "tests", "data")
GOLDEN = dict(np.load(os.path.join(DATA, "inception_golden.npz")))
_spec = importlib.util.spec_from_file_location(
    "inception_golden", os.path.join(REPO, "scripts", "inception_golden.py"))
REF = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(REF)  # its inputs and cases; the reference packages are not imported
# float32 networks: |ours - pytorch-fid| <= RTOL |ref| + RTOL max|ref| (measured: ~1e-6 of max)
RTOL = 1e-4


@pytest.fixture(scope="module")
def weights_file(tmp_path_factory):
  path = str(tmp_path_factory.mktemp("inception") / "random.pth")
  iw.save_state_dict(path, iw.random_state_dict(int(GOLDEN["seed"])))
  return path


@pytest.fixture(scope="module")
def extractors(weights_file):
  params, record = iw.load(weights_file)
  assert not record["inception_weights_standard"] and len(record["inception_weights_sha256"]) == 64
  return {c: inception.Extractor(params, parallel.make_mesh(), c, batch=2)
          for c in inception.RESIZES}


@pytest.mark.parametrize("convention", inception.RESIZES)
def test_features_and_logits_equal_pytorch_fid(extractors, convention):
  for name, images in REF.test_inputs().items():
    out = extractors[convention](images)
    for k in ("pool3", "logits", "logits_unbiased"):
      ref = GOLDEN[f"{convention}/{name}/{k}"]
      assert out[k].shape == ref.shape and np.abs(ref).max() > 0.1
      np.testing.assert_allclose(out[k], ref, rtol=RTOL, atol=RTOL * np.abs(ref).max(),
                                 err_msg=f"{convention} {name} {k}")


def test_resize_conventions_equal_torch_bilinear_and_pil_bicubic():
  """Up (to 47) and down (to 19, where the clean convention antialiases); pixels in [0, 1]."""
  for name, images in REF.test_inputs().items():
    for size, tag in ((47, "resized"), (19, "resized_down")):
      for convention in inception.RESIZES:
        got = np.asarray(inception.resize(images, convention, size))
        np.testing.assert_allclose(got, GOLDEN[f"{convention}/{name}/{tag}"], rtol=0, atol=1e-5,
                                   err_msg=f"{convention} {name} {tag}")


def test_frechet_distance_equals_pytorch_fid():
  for name, (seed, n_a, n_b, dim) in REF.FD_CASES.items():
    a, b = REF.feature_sets(seed, n_a, n_b, dim)
    np.testing.assert_allclose(metrics.frechet_distance(a, b), GOLDEN[f"fd/{name}/pytorch_fid"],
                               rtol=1e-7, err_msg=name)


def _trace_sqrt(s_a, s_b) -> float:
  """Tr (S_a S_b)^(1/2) by our eigh formulation (the FD of equal means)."""
  zero = np.zeros(len(s_a))
  return (np.trace(s_a) + np.trace(s_b) - metrics.frechet_distance_stats(zero, s_a, zero, s_b)) / 2


def _covariance(rng, eigenvalues):
  q, _ = np.linalg.qr(rng.normal(size=(len(eigenvalues),) * 2))
  return (q * eigenvalues) @ q.T


@pytest.mark.parametrize("case,rtol", [("well", 1e-10), ("ill", 1e-6), ("singular", 1e-6)])
def test_eigh_square_root_equals_scipy_sqrtm_and_is_always_real(case, rtol):
  rng, d = np.random.default_rng(7), 64
  if case == "well":  # condition number 10
    s_a, s_b = (_covariance(rng, rng.uniform(1, 10, d)) for _ in range(2))
  elif case == "ill":  # condition number 1e12
    s_a, s_b = (_covariance(rng, np.logspace(-10, 2, d)) for _ in range(2))
  else:  # fewer samples than features: rank 20 covariances, as FID with few samples
    s_a, s_b = (np.cov(rng.normal(size=(21, d)), rowvar=False) for _ in range(2))
  ours = _trace_sqrt(s_a, s_b)
  reference = np.trace(scipy.linalg.sqrtm(s_a @ s_b)).real
  assert np.isfinite(ours) and isinstance(ours, float)
  np.testing.assert_allclose(ours, reference, rtol=rtol)
  assert metrics.frechet_distance_stats(np.zeros(d), s_a, np.zeros(d), s_a) == pytest.approx(
      0.0, abs=1e-6 * np.trace(s_a))


def test_inception_score_equals_torch_fidelity():
  for name, (seed, n) in REF.IS_CASES.items():
    logits = np.random.default_rng(seed).normal(0.0, 3.0, (n, 1008)).astype(np.float32)
    np.testing.assert_allclose(metrics.inception_score(logits, 10),
                               GOLDEN[f"is/{name}/shuffle_False"], rtol=1e-10)
    np.testing.assert_allclose(metrics.inception_score(logits, 10, shuffle_seed=2020),
                               GOLDEN[f"is/{name}/shuffle_True"], rtol=1e-10)
  one_hot = np.where(np.eye(20, 1008) > 0, 800.0, -800.0)  # p(y|x) exactly 0 for most classes
  assert metrics.inception_score(one_hot, 2) == pytest.approx((10.0, 0.0))


def test_kid_equals_torch_fidelity_and_caps_its_subset_size():
  for name, (seed, n_a, n_b, dim, subsets, size) in REF.KID_CASES.items():
    a, b = REF.feature_sets(seed, n_a, n_b, dim)
    np.testing.assert_allclose(metrics.kernel_inception_distance(a, b, subsets, size),
                               GOLDEN[f"kid/{name}"], rtol=1e-10, err_msg=name)
  a, b = REF.feature_sets(4, 30, 25, 8)  # torch-fidelity refuses subsets larger than a set
  assert metrics.kernel_inception_distance(a, b, 3, 1000) == metrics.kernel_inception_distance(
      a, b, 3, 25)


def test_reader_reads_torch_files_of_both_formats():
  for fmt in ("zip", "legacy"):  # written by torch.save (scripts/inception_golden.py)
    state = iw.read_state_dict(os.path.join(DATA, f"tiny_state_{fmt}.pth"))
    assert state["a.weight"].dtype == np.float32 and state["a.weight"].tolist() == [[0, 1, 2],
                                                                                    [3, 4, 5]]
    assert state["a.bn.running_var"].dtype == np.float64
    assert state["b.bn.num_batches_tracked"] == 7
    np.testing.assert_array_equal(state["c.transposed"], np.arange(12.0).reshape(3, 4).T)


def test_missing_wrong_or_malicious_weights_are_one_clear_error(tmp_path):
  with pytest.raises(iw.WeightsError) as e:
    iw.read_state_dict(str(tmp_path / "none.pth"))
  message = str(e.value)
  assert "\n" not in message and iw.URL in message and "--config.inception_weights=PATH" in message
  assert "$INCEPTION_WEIGHTS" in message
  with pytest.raises(iw.WeightsError, match="no tensor 'Conv2d_1a_3x3.conv.weight'"):
    iw.to_params(iw.read_state_dict(os.path.join(DATA, "tiny_state_zip.pth")))
  (tmp_path / "text.pth").write_text("not a checkpoint")
  with pytest.raises(iw.WeightsError, match="not a PyTorch state dict"):
    iw.read_state_dict(str(tmp_path / "text.pth"))
  evil = tmp_path / "evil.pth"
  with zipfile.ZipFile(evil, "w") as z:  # a pickle that would run a command
    z.writestr("archive/data.pkl", pickle.dumps(os.system, protocol=2))
  with pytest.raises(iw.WeightsError, match="unexpected object"):
    iw.read_state_dict(str(evil))


def _fake_inception(config, calls: list):
  inc = inception_eval.Inception.__new__(inception_eval.Inception)
  inc.config, inc.record, inc.published = config, {"inception_weights_sha256": "ab" * 32}, None

  def extract(images):
    calls.append(len(images))
    x = images.reshape(len(images), -1)[:, :4].astype(np.float32)
    return {"pool3": x, "logits_unbiased": x}

  inc.extract = extract
  return inc


def test_reference_features_are_kept_and_a_mismatching_file_is_never_used(tmp_path, capsys):
  config = ConfigDict(dict(dataset="mnist", data_dir=str(tmp_path), inception_resize="clean"))
  calls = []
  inc = _fake_inception(config, calls)
  images = np.random.default_rng(0).integers(0, 256, (6, 5, 5, 1), dtype=np.uint8)
  first, path = inc.features("train", images)
  again, _ = inc.features("train", images)
  assert calls == [6] and os.path.basename(path) == "mnist_train_6_clean_abababababab.npz"
  np.testing.assert_array_equal(first["sigma"], again["sigma"])
  other = images.copy()
  other[0, 0, 0, 0] ^= 1  # same name, other images: recomputed
  inc.features("train", other)
  assert calls == [6, 6] and "its images_sha1 do not match" in capsys.readouterr().out
  with np.load(path) as f:  # a file whose statistics are not its features'
    tampered = dict(f)
  tampered["mu"] = tampered["mu"] + 1.0
  np.savez(path, **tampered)
  inc.features("train", other)
  assert calls == [6, 6, 6] and "features and mean do not match" in capsys.readouterr().out
  record = json.loads(str(np.load(path)["record"]))
  assert record["split"] == "train" and record["resize"] == "clean" and record["num"] == 6


def test_evaluate_uses_published_statistics_and_records_the_protocol(tmp_path, capsys):
  """inception_eval.evaluate with a stand-in extractor: published (mu, sigma) replace the
  reference's for the FID (of samples and of real images), the rest use the reference."""
  rng = np.random.default_rng(3)
  host = {split: datasets.HostSplit(rng.integers(0, 256, (n, 5, 5, 1), dtype=np.uint8),
                                    np.zeros(n, np.int32), n)
          for split, n in (("train", 40), ("test", 30))}
  published = tmp_path / "stats.npz"
  config = ConfigDict(dict(dataset="mnist", data_dir=str(tmp_path), inception_resize="clean",
                           inception_reference_split="test", inception_reference_samples=0,
                           inception_reference_stats=""))
  inc = _fake_inception(config, [])
  images = rng.integers(0, 256, (20, 5, 5, 1), dtype=np.uint8)  # "samples"
  out = inception_eval.evaluate(inc, images, host, seed=9)
  own = out["inception_fid"]
  mu, sigma = np.full(4, 50.0), np.eye(4)
  np.savez(published, mu=mu, sigma=sigma)
  inc.published, config.inception_reference_stats = (mu, sigma), str(published)
  out = inception_eval.evaluate(inc, images, host, seed=9)
  pool = images.reshape(20, -1)[:, :4].astype(np.float64)
  assert out["inception_fid"] == pytest.approx(metrics.frechet_distance_stats(
      pool.mean(0), np.cov(pool, rowvar=False), mu, sigma)) and out["inception_fid"] != own
  assert out["real"]["inception_kid"] != out["inception_kid"]
  protocol = out["protocol"]["inception"]
  assert (protocol["reference_split"], protocol["num_reference"]) == ("test", 30)
  assert (protocol["real_split"], protocol["num_real"], protocol["num_samples"]) == ("train", 20, 20)
  assert protocol["fid_reference_stats_sha256"] == iw.sha256(str(published))
  assert protocol["kid_subset_size"] == 20 and protocol["sampling_seed"] == 9
  assert "Warning: Inception FID from 20 < 2048 samples" in capsys.readouterr().out


def test_published_statistics_are_checked(tmp_path):
  good, bad = tmp_path / "good.npz", tmp_path / "bad.npz"
  np.savez(good, mu=np.zeros(2048), sigma=np.eye(2048))
  np.savez(bad, mu=np.zeros(64), sigma=np.eye(64))
  mu, sigma = inception_eval.read_published(str(good))
  assert mu.shape == (2048,) and sigma.shape == (2048, 2048)
  with pytest.raises(ConfigError, match="not pool3 statistics"):
    inception_eval.read_published(str(bad))
  with pytest.raises(ConfigError, match="not a pytorch-fid statistics file"):
    inception_eval.read_published(str(tmp_path / "none.npz"))


def test_a_gan_run_reports_every_inception_metric_with_real_values(tfds_dir, weights_file,
                                                                   tmp_path):
  """Training logs eval_inception_fid and keeps the best checkpoint by it; the evaluation at the
  end prints each metric beside its real-data value and records the protocol."""
  workdir = tmp_path / "run"
  small = ["--config.inception_reference_samples=12", "--config.inception_batch_size=6"]
  r = run_module(["-m", "gan.main", "--config=configs/gan.py:test", f"--workdir={workdir}",
                  "--config.num_epochs=1", "--config.eval_samples=12",
                  "--config.train_inception_samples=6", "--config.best_metric=eval_inception_fid",
                  f"--config.inception_weights={weights_file}", *small])
  assert r.returncode == 0, r.stderr[-3000:]
  row = json.loads((workdir / "metrics.jsonl").read_text().splitlines()[-1])
  results = json.loads((workdir / "results.json").read_text())
  assert np.isfinite(row["eval_inception_fid"]) and results["best"]["metric"] == "eval_inception_fid"
  names = ("fid", "is", "is_std", "kid", "kid_std", "precision", "recall", "density", "coverage")
  for metric in names:
    assert f"inception_{metric}" in results["eval"] and f"inception_{metric}" in results["eval"]["real"]
    assert f"\n  inception_{metric} " in r.stdout and "real images: " in r.stdout, metric
  assert "Warning: Inception FID from 12 < 2048 samples" in r.stdout
  protocol = results["eval"]["protocol"]["inception"]
  assert protocol["resize"] == "pytorch_fid" and protocol["num_samples"] == 12
  assert protocol["reference_split"] == "train" and protocol["num_reference"] == 12
  assert protocol["inception_weights_sha256"] == iw.sha256(weights_file)
  assert protocol["real_split"] == "test" and protocol["sampling_seed"] == 2
  r = run_module(["-m", "gan.evaluate", f"--workdir={workdir}", "--num=12",
                  f"--inception_weights={tmp_path / 'missing.pth'}"])
  assert r.returncode != 0 and len(r.stderr.strip().splitlines()) == 1, r.stderr[-3000:]
  assert "Download https://github.com/mseitzer/pytorch-fid/releases" in r.stderr


def test_training_fid_without_weights_is_refused_at_validation(monkeypatch):
  from gan import options  # pylint: disable=g-import-not-at-top
  monkeypatch.delenv("INCEPTION_WEIGHTS", raising=False)
  config = options.get_config()
  config.train_inception_samples = 100
  with pytest.raises(ConfigError, match="--config.inception_weights=PATH or set "
                                        r"\$INCEPTION_WEIGHTS"):
    options.validate(config)
  monkeypatch.setenv("INCEPTION_WEIGHTS", "/machine/wide/pt_inception.pth")
  options.validate(config)  # the file itself is checked when it is read, before any compilation
