"""The GAN family: losses against hand-computed values, each variant's step on real MNIST,
exact resume, sampling and evaluation."""

import json
import os
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from common import parallel
from gan import options as gan_options
from gan import losses
from gan import players as players_lib
from gan import train as gan_train
from gan.step import make_train_step
from conftest import REPO, latest_params, load_config, preempted_at, run_module
import metric_refs

VARIANTS = ("gan", "dcgan", "cgan", "acgan", "wgan", "wgan_gp")


def test_minimax_at_d_one_half_everywhere():
  zeros = jnp.zeros((8,))  # logit 0 <=> D = 0.5
  assert np.isclose(losses.d_minimax(zeros, zeros), np.log(2.0))
  assert np.isclose(losses.g_minimax(zeros), -np.log(2.0))  # J(G) = -J(D) at D = 1/2
  assert np.isclose(losses.g_non_saturating(zeros), np.log(2.0))
  # One-sided smoothing changes only the real term: 0.5 * (0.9 + 0.1) * log 2 + 0.5 log 2.
  assert np.isclose(losses.d_minimax(zeros, zeros, 0.9), np.log(2.0))
  assert np.isclose(losses.d_minimax(jnp.full((4,), 3.0), jnp.full((4,), -3.0), 0.9),
                    0.5 * (0.9 * np.log1p(np.exp(-3.0)) + 0.1 * np.log1p(np.exp(3.0)))
                    + 0.5 * np.log1p(np.exp(-3.0)), rtol=1e-5)


def test_losses_are_stable_for_extreme_logits():
  big = jnp.array([1e4, -1e4])
  for value in (losses.d_minimax(big, -big), losses.g_minimax(big), losses.g_non_saturating(big)):
    assert np.isfinite(float(value))


def test_gradient_penalty_of_linear_critics():
  real = jax.random.normal(jax.random.PRNGKey(0), (16, 4, 4, 1))
  fake = jax.random.normal(jax.random.PRNGKey(1), (16, 4, 4, 1))
  w = jax.random.normal(jax.random.PRNGKey(2), (4, 4, 1))
  unit = w / jnp.linalg.norm(w)
  critic = lambda x, v: jnp.sum(x * v, axis=(1, 2, 3))
  assert float(losses.gradient_penalty(lambda x: critic(x, unit), real, fake,
                                       jax.random.PRNGKey(3))) < 1e-6
  assert np.isclose(float(losses.gradient_penalty(lambda x: critic(x, 3 * unit), real, fake,
                                                  jax.random.PRNGKey(3))), 4.0, rtol=1e-4)


def test_wasserstein_and_aux_losses():
  real, fake = jnp.array([2.0, 4.0]), jnp.array([1.0, -1.0])
  assert np.isclose(losses.d_wasserstein(real, fake), 0.0 - 3.0)
  assert np.isclose(losses.g_wasserstein(fake), 0.0)
  logits = jnp.array([[10.0, 0.0, 0.0], [0.0, 10.0, 0.0]])
  assert float(losses.aux_cross_entropy(logits, jnp.array([0, 1]))) < 1e-3
  assert float(losses.aux_cross_entropy(logits, jnp.array([1, 0]))) > 9.0


def _step_once(name, tfds_dir, **overrides):
  from common.data import datasets  # pylint: disable=g-import-not-at-top
  config = load_config(name, **overrides)
  info, host = datasets.load_host(config)
  k, b = config.d_steps, config.batch_size
  batch = {"image": jnp.asarray(host["train"].images[:k * b].reshape((k, b) + info.shape)),
           "label": jnp.asarray(host["train"].labels[:k * b].reshape((k, b)))}
  players, g_tx, d_tx = players_lib.build(config, info, 10)
  state = players_lib.init_state(players, g_tx, d_tx, config.g_ema_decay > 0,
                                 jax.random.PRNGKey(0))
  step = make_train_step(config, players, g_tx, d_tx)
  new_state, metrics = jax.jit(step)(state, batch, jax.random.PRNGKey(1))
  return config, info, state, new_state, metrics


@pytest.mark.parametrize("name", VARIANTS)
def test_each_variant_steps_on_real_mnist_with_finite_losses(tfds_dir, name):
  config, _, before, after, metrics = _step_once(name, tfds_dir)
  for key, value in metrics.items():
    assert np.isfinite(float(value)), key
  assert "d_loss" in metrics and "g_loss" in metrics
  if name == "acgan":
    assert {"d_aux", "g_aux", "aux_acc_real"} <= set(metrics)
  if name.startswith("wgan"):
    assert "wasserstein" in metrics
  if name == "wgan_gp":
    assert float(metrics["gp"]) > 0
  for player in ("g", "d"):  # both players moved
    moved = [not np.array_equal(a, b) for a, b in zip(jax.tree.leaves(before.params[player]),
                                                       jax.tree.leaves(after.params[player]))]
    assert any(moved), player
  if name == "wgan":
    for leaf in jax.tree.leaves(after.params["d"]):
      assert float(jnp.max(jnp.abs(leaf))) <= config.loss.clip + 1e-7


def test_generator_ema_averages_its_weights_and_draws_the_samples(tfds_dir):
  config, info, before, after, _ = _step_once("wgan", tfds_dir, g_ema_decay=0.999)
  d = 1.0 / 10.0  # the first update's decay, min(0.999, (1 + 0) / (10 + 0))
  for b, a, e in zip(jax.tree.leaves(before.params["g"]), jax.tree.leaves(after.params["g"]),
                     jax.tree.leaves(after.model_state["g_ema"])):
    np.testing.assert_allclose(e, d * b + (1.0 - d) * a, rtol=1e-5, atol=1e-7)
  players, _, _ = players_lib.build(config, info, 10)
  z, labels = players_lib.sample_latent(config.model, 10, jax.random.PRNGKey(2), 4)
  ema_images = players.generate(after.model_state["g_ema"], after.model_state["g"], z, labels,
                                train=False)[0]
  online_images = players.generate(after.params["g"], after.model_state["g"], z, labels,
                                   train=False)[0]
  np.testing.assert_array_equal(players.sample(after, z, labels), ema_images)
  assert not np.array_equal(ema_images, online_images)


def test_invalid_combinations_are_rejected():
  from common import config as cfg  # pylint: disable=g-import-not-at-top
  with pytest.raises(cfg.ConfigError, match="without batch norm"):
    gan_options.validate(load_config("wgan_gp", **{"model.d_norm": "batch"}))
  with pytest.raises(cfg.ConfigError, match="don't match"):
    gan_options.validate(load_config("gan", **{"loss.d": "wasserstein"}))


def test_gan_resume_with_other_chunks_and_placement_equals_uninterrupted(tfds_dir, tmp_path):
  """Stopped at step 4 of 10 (chunks of 4; inside the straight run's one chunk per epoch),
  resumed in chunks of 3 streamed from the host, then extended to 2 epochs on device."""
  ema = {"g_ema_decay": 0.99}  # the generator's average resumes too
  straight, _ = gan_train.train_and_evaluate(load_config("dcgan", num_epochs=2, **ema),
                                             str(tmp_path / "a"))
  with preempted_at(4):
    _, r = gan_train.train_and_evaluate(load_config("dcgan", num_epochs=1, steps_per_call=4, **ema),
                                        str(tmp_path / "b"))
  assert r["preempted"] and r["step"] == 4
  gan_train.train_and_evaluate(
      load_config("dcgan", num_epochs=1, steps_per_call=3, data_placement="host", **ema),
      str(tmp_path / "b"))
  resumed, _ = gan_train.train_and_evaluate(load_config("dcgan", num_epochs=2, **ema),
                                            str(tmp_path / "b"))
  assert "g_ema" in resumed.model_state
  for a, b in zip(jax.tree.leaves(straight), jax.tree.leaves(resumed)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  assert (tmp_path / "a" / "samples" / "epoch_002.png").exists()
  assert (tmp_path / "a" / "losses.png").exists()


@pytest.fixture(scope="module")
def acgan_run(tfds_dir, tmp_path_factory):
  workdir = tmp_path_factory.mktemp("acgan")
  r = run_module(["-m", "gan.main", "--config=configs/acgan.py:test", "--config.num_epochs=1",
                  f"--workdir={workdir}"])
  assert r.returncode == 0, r.stderr[-3000:]
  assert "d_loss: " in r.stdout and "g_loss: " in r.stdout and "d_aux: " in r.stdout
  return workdir


def test_sample_command_writes_images_and_labels(acgan_run, tmp_path):
  out = tmp_path / "s.npz"
  r = run_module(["-m", "gan.sample", f"--workdir={acgan_run}", "--num=20", f"--out={out}",
                  f"--png={tmp_path / 's.png'}"])
  assert r.returncode == 0, r.stderr[-3000:]
  d = np.load(out)
  assert d["images"].shape == (20, 28, 28, 1) and d["images"].dtype == np.uint8
  assert np.bincount(d["labels"], minlength=10).tolist() == [2] * 10
  r = run_module(["-m", "gan.sample", f"--workdir={acgan_run}", "--num=7", "--label=6",
                  f"--out={out}"])
  assert r.returncode == 0, r.stderr[-3000:]
  assert np.load(out)["labels"].tolist() == [6] * 7
  assert (tmp_path / "s.png").stat().st_size > 1000
  png = tmp_path / "alone.png"
  r = run_module(["-m", "gan.sample", f"--workdir={acgan_run}", "--num=13", f"--png={png}"])
  assert r.returncode == 0, r.stderr[-3000:]
  assert r.stdout.strip().endswith(f": {png}") and png.stat().st_size > 1000


def test_a_run_saved_before_a_config_key_existed_still_restores(acgan_run, tmp_path):
  import shutil  # pylint: disable=g-import-not-at-top
  old = tmp_path / "old"
  shutil.copytree(acgan_run, old)
  saved = json.loads((old / "config.json").read_text())
  del saved["g_ema_decay"]  # as written before the key was added
  (old / "config.json").write_text(json.dumps(saved))
  run, _ = players_lib.restore(str(old), parallel.make_mesh())
  assert run.config.g_ema_decay == 0.0 and "g_ema" not in run.state.model_state


def test_sample_into_a_missing_folder_is_refused_before_sampling(acgan_run, tmp_path):
  r = run_module(["-m", "gan.sample", f"--workdir={acgan_run}", "--num=4",
                  f"--out={tmp_path}/nowhere/x.npz"])
  assert r.returncode != 0 and r.stderr.strip().splitlines() == [
      f"Error: The folder of {tmp_path}/nowhere/x.npz does not exist; create it or write "
      "elsewhere."]


def test_sample_without_checkpoint_is_a_clear_error(tmp_path):
  r = run_module(["-m", "gan.sample", f"--workdir={tmp_path}", "--num=4", f"--out={tmp_path}/x.npz"])
  assert r.returncode != 0 and "Error: No GAN run in" in r.stderr and "Traceback" not in r.stderr


@pytest.fixture(scope="module")
def mnist_classifier(tfds_dir, tmp_path_factory):
  from cnn import train as cnn_train  # pylint: disable=g-import-not-at-top
  clf = tmp_path_factory.mktemp("clf")
  cnn_train.train_and_evaluate(load_config("cnn_seed", num_epochs=1), str(clf))
  return clf


def test_evaluate_with_a_trained_classifier(acgan_run, mnist_classifier, tmp_path):
  clf = mnist_classifier
  # A relative classifier_workdir (as the configs' default 'runs/cnn' is) works too.
  rel = os.path.relpath(clf, REPO)
  r = run_module(["-m", "gan.evaluate", f"--workdir={acgan_run}", f"--classifier_workdir={rel}",
                  "--num=500"])
  assert r.returncode == 0, r.stderr[-3000:]
  metrics = json.loads((acgan_run / "results.json").read_text())["eval"]
  samples, real = _reference_eval(acgan_run, clf, 500)
  for got, want in ((metrics, samples), (metrics["real"], real)):
    for key, value in want.items():
      assert got[key] == pytest.approx(value, rel=1e-4, abs=2e-4 if "histogram" in key else 2e-3), key
  assert metrics["fid"] > metrics["real"]["fid"]
  protocol = metrics["protocol"]
  assert protocol["num_samples"] == 500 and protocol["reference"] == "test"
  assert protocol["generator"] == "online" and protocol["step"] == 10
  assert protocol["classifier_test_accuracy"] > 0.1 and len(protocol["classifier_fingerprint"]) == 12
  r = run_module(["-m", "gan.evaluate", f"--workdir={acgan_run}", "--num=500",
                  f"--classifier_workdir={tmp_path / 'none'}"])
  assert r.returncode != 0 and "python -m cnn.main --config=configs/cnn.py" in r.stderr
  # The :test preset's own sample count is 0: refused in one line, before any sampling.
  r = run_module(["-m", "gan.evaluate", f"--workdir={acgan_run}", f"--classifier_workdir={rel}"])
  assert r.returncode != 0 and r.stderr.strip().splitlines() == [
      "Error: --num=0 samples are too few to evaluate; use at least 10 (10000 is the usual count)."]
  r = run_module(["-m", "gan.evaluate", f"--workdir={acgan_run}", f"--classifier_workdir={acgan_run}",
                  "--num=500"])  # a GAN run is no classifier
  assert r.returncode != 0 and "holds no cnn classifier run" in r.stderr
  assert len(r.stderr.strip().splitlines()) == 1, r.stderr


def _reference_eval(gan_workdir, classifier_workdir, num: int) -> tuple[dict, dict]:
  """gan.evaluate's metrics for the run's samples and for real training images, each against the
  first `num` test images, from the classifier's outputs by the brute-force references."""
  from common.data import datasets  # pylint: disable=g-import-not-at-top
  from gan import evaluation  # pylint: disable=g-import-not-at-top
  mesh = parallel.make_mesh()
  run, players = players_lib.restore(str(gan_workdir), mesh)
  classify, _ = evaluation.load_classifier(str(classifier_workdir), run.info, mesh)
  _, host = datasets.load_host(run.config)
  test, train = host["test"], host["train"]
  ref, _ = classify(test.images[:num])
  ref_labels = test.labels[:num]
  images, labels = players_lib.generate(run.config, players, run.state, num,
                                        jax.random.PRNGKey(run.config.seed + 2))
  out = []
  for images, labels in ((images, labels), (train.images[:num], train.labels[:num])):
    feats, probs = (np.asarray(a, np.float64) for a in classify(images))
    predicted = probs.argmax(1)
    precision, recall = metric_refs.precision_recall(ref, feats)
    density, coverage = metric_refs.density_coverage(ref, feats)
    out.append({
        "fid": metric_refs.frechet_distance(feats, ref),
        "classifier_score": metric_refs.classifier_score(probs),
        "precision": precision, "recall": recall, "density": density, "coverage": coverage,
        "class_histogram": [np.mean(predicted == c) for c in range(10)],
        "conditional_accuracy": np.mean(predicted == labels),
        "intra_class_fd": np.mean([metric_refs.frechet_distance(
            feats[labels == c], ref[ref_labels == c]) for c in range(10)])})
  return out[0], out[1]


def test_library_calls_equal_the_hand_written_formulas_they_replace():
  """optax's sigmoid BCE and incremental_update against the formulas they replaced."""
  logits = jnp.array([-30.0, -2.5, -1e-3, 0.0, 0.7, 3.0, 40.0])
  for target in (0.0, 0.9, 0.95, 1.0):
    old = target * jax.nn.softplus(-logits) + (1.0 - target) * jax.nn.softplus(logits)
    np.testing.assert_allclose(losses.bce(logits, target), old, rtol=1e-6, atol=1e-6)
  ema = {"w": jnp.array([0.0, 1.0, -2.0])}
  params = {"w": jnp.array([1.0, 1.5, 2.0])}
  for step in (0, 5, 10_000):
    d = min(0.999, (1.0 + step) / (10.0 + step))
    old = ema["w"] + (1.0 - d) * (params["w"] - ema["w"])
    np.testing.assert_allclose(players_lib.ema_update(ema, params, 0.999, jnp.float32(step))["w"],
                               old, rtol=1e-6, atol=1e-7)


def test_training_evaluates_each_epoch_keeps_the_best_and_evaluates_it(mnist_classifier,
                                                                       tmp_path):
  workdir = tmp_path / "run"
  r = run_module(["-m", "gan.main", "--config=configs/cgan.py:test", f"--workdir={workdir}",
                  f"--config.classifier_workdir={mnist_classifier}", "--config.num_epochs=3",
                  "--config.train_eval_samples=200", "--config.best_metric=eval_fid"])
  assert r.returncode == 0, r.stderr[-3000:]
  rows = [json.loads(l) for l in (workdir / "metrics.jsonl").read_text().splitlines()]
  fids = [row["eval_fid"] for row in rows]
  assert len(fids) == 3 and all(np.isfinite(fids))
  assert all("eval_conditional_accuracy" in row for row in rows)
  best = json.loads((workdir / "results.json").read_text())["best"]
  assert best["value"] == min(fids) and best["step"] == rows[int(np.argmin(fids))]["step"]
  r = run_module(["-m", "gan.evaluate", f"--workdir={workdir}", "--step=best", "--num=300",
                  f"--classifier_workdir={mnist_classifier}"])
  assert r.returncode == 0, r.stderr[-3000:]
  for metric in ("fid", "precision", "recall", "density", "coverage", "intra_class_fd", "cas"):
    assert re.search(rf"\n  {metric} +[-0-9.]+ +real images: [-0-9.]+", r.stdout), metric
  protocol = json.loads((workdir / "results.json").read_text())["eval"]["protocol"]
  assert protocol["step"] == best["step"] and protocol["num_samples"] == 300


def test_classification_accuracy_score_separates_real_labels_from_shuffled(tfds_dir):
  from common.data import datasets  # pylint: disable=g-import-not-at-top
  from gan import evaluation  # pylint: disable=g-import-not-at-top
  info, host = datasets.load_host(load_config("cnn_seed"))
  images, labels = host["train"].images[:2000], host["train"].labels[:2000]
  real = evaluation.classification_accuracy(info, images, labels, host["test"], epochs=2)
  shuffled = evaluation.classification_accuracy(
      info, images, np.random.RandomState(0).permutation(labels), host["test"], epochs=2)
  assert real > 0.45 and shuffled < 0.2, (real, shuffled)  # measured: 0.61 and 0.11


def test_readme_python_api_snippet_runs(acgan_run, mnist_classifier):
  text = (REPO / "README.md").read_text()
  snippet = text.split("## In a notebook: the Python API", 1)[1].split("```python\n", 1)[1]
  snippet = snippet.split("```", 1)[0].replace('"runs/acgan_cpu"', repr(str(acgan_run)))
  snippet = snippet.replace('"runs/cnn"', repr(str(mnist_classifier)))
  scope: dict = {}
  exec(compile(snippet, "README.md", "exec"), scope)  # pylint: disable=exec-used
  gan, images = scope["gan"], scope["images"]
  assert images.shape == (4, 28, 28, 1) and images.dtype == np.uint8
  assert scope["more"].shape == (20, 28, 28, 1) and gan.conditional
  assert np.isfinite(scope["metrics"]["fid"]) and scope["metrics"]["protocol"]["num_samples"] == 500
  assert scope["clf"].predict(images).shape == (4, 10)
