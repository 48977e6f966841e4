"""The modern GAN toolkit's switches: spectral norm against numpy's SVD, the hinge, projection and
LeCam terms against their formulas, DiffAugment's keys and gradients, and every switch together on
TFDS mock CIFAR-10 (32x32x3) and MNIST (28x28x1): trains, resumes bitwise (the power iteration's
vectors and LeCam's EMAs included), samples and evaluates."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import tensorflow_datasets as tfds
from flax import nnx

from common import config as cfg
from common.data import datasets
from common import parallel
from common.nn.layers import Conv, Dense
from cnn import train as cnn_train
from gan import augment
from gan import evaluation
from gan import options as gan_options
from gan import losses
from gan import players as players_lib
from gan import resnet
from gan import spectral
from gan import step as step_lib
from gan import train as gan_train
from conftest import load_config

POLICY = "color,translation,cutout"


@pytest.mark.parametrize("layer", [
    lambda r: Dense(12, 7, rngs=r),
    lambda r: Conv(3, 5, (3, 3), padding="SAME", rngs=r)], ids=["dense", "conv"])
def test_spectral_norm_brings_the_largest_singular_value_to_one(layer):
  sn = spectral.SpectralNorm(layer(nnx.Rngs(0)), rngs=nnx.Rngs(1))
  x = jnp.ones((2, 12) if isinstance(sn.layer, Dense) else (2, 6, 6, 3))
  for _ in range(50):  # one power iteration per training call, u kept between calls
    y = sn(x, train=True)
  kernel = spectral._kernel(sn.layer)[...]  # pylint: disable=protected-access
  sigma, _ = spectral.power_iteration(kernel, sn.u[...])
  matrix = np.asarray(kernel).reshape(-1, kernel.shape[-1])  # [kh * kw * in, out], as the paper
  top = np.linalg.svd(matrix / float(sigma), compute_uv=False)[0]
  assert abs(top - 1.0) < 1e-3, top
  assert abs(float(sigma) - np.linalg.svd(matrix, compute_uv=False)[0]) < 1e-3 * float(sigma)
  u = sn.u[...]
  np.testing.assert_array_equal(sn(x, train=False), sn(x, train=False))
  np.testing.assert_array_equal(sn.u[...], u)  # evaluation keeps u
  assert y.shape[0] == 2


def test_resnet_blocks_compute_the_papers_shortcuts():
  """The 1x1 shortcut convs run on the small side of up-sampling and pooling; the function must
  stay the paper's: G's shortcut up-samples then convolves, D's (past the first block) convolves
  then pools."""
  init = nnx.initializers.glorot_uniform()
  g = resnet.GBlock(4, 6, 0, 0, init, dtype=None, rngs=nnx.Rngs(0))
  d = resnet.DBlock(6, 5, True, False, lambda c: [], init, dtype=None, rngs=nnx.Rngs(1))
  x = jax.random.normal(jax.random.PRNGKey(2), (2, 8, 8, 4))
  up = g.up  # nearest up-sampling, the project's layer
  h = up(jax.nn.relu(g.bn1(x, None, train=False)))
  h = g.conv2(jax.nn.relu(g.bn2(g.conv1(h), None, train=False)))
  np.testing.assert_allclose(g(x, None, train=False), h + g.shortcut(up(x)), atol=1e-5)
  y = jax.random.normal(jax.random.PRNGKey(3), (2, 8, 8, 6))
  h = resnet.avg_pool(d.conv2(jax.nn.relu(d.conv1(jax.nn.relu(y)))))
  np.testing.assert_allclose(d(y, train=False), h + resnet.avg_pool(d.shortcut(y)), atol=1e-5)


def test_shared_embedding_conditions_every_block_through_one_class_table():
  """BigGAN's conditional batch norm: BN(x) * (1 + e W_g) + e W_b for the class's shared
  embedding e; G holds one class table, not one per block."""
  init = nnx.initializers.normal(0.5)
  cbn = resnet.ConditionalBatchNorm(4, 10, 6, init, rngs=nnx.Rngs(0))
  x = jax.random.normal(jax.random.PRNGKey(1), (3, 5, 5, 4)) * 2 + 1
  e = jax.random.normal(jax.random.PRNGKey(2), (3, 6))
  mean, var = x.mean(axis=(0, 1, 2)), x.var(axis=(0, 1, 2))
  w_g, w_b = cbn.gain.linear.kernel[...], cbn.bias.linear.kernel[...]
  expected = ((x - mean) / np.sqrt(var + 1e-5) * (1 + e @ w_g)[:, None, None]
              + (e @ w_b)[:, None, None])
  np.testing.assert_allclose(cbn(x, e, train=True), expected, rtol=1e-4, atol=1e-4)
  config = load_config("cgan_pd", **{"model.g_shared_embedding": 8})
  info = datasets.DatasetInfo("toy", "1", (28, 28, 1), 10, tuple("abcdefghij"))
  players, _, _ = players_lib.build(config, info, 1)
  tables = [p.shape for p in jax.tree.leaves(players.params["g"]) if p.shape[:1] == (10,)]
  assert tables == [(10, 8)]


def test_hinge_projection_and_lecam_against_their_formulas():
  real, fake = jnp.array([2.0, 0.5, -1.0]), jnp.array([-3.0, 0.2, 1.5])
  # mean(relu(1 - real)) = (0 + 0.5 + 2) / 3; mean(relu(1 + fake)) = (0 + 1.2 + 2.5) / 3
  assert np.isclose(losses.d_hinge(real, fake), 6.2 / 3)
  assert np.isclose(losses.g_hinge(fake), 1.3 / 3)
  # relu(real + 0.2)^2 = 4.84, 0.49, 0; relu(0.4 - fake)^2 = 11.56, 0.04, 0
  assert np.isclose(losses.lecam(real, fake, 0.4, -0.2), (5.33 + 11.6) / 3, rtol=1e-6)
  features = jnp.array([[1.0, 2.0], [3.0, -1.0]])
  embedding = jnp.array([[0.5, -1.0], [2.0, 1.0]])
  np.testing.assert_allclose(losses.projection(features, embedding), [-1.5, 5.0])
  config = load_config("sngan", **{"loss.lecam_weight": 0.5, "loss.lecam_decay": 0.9})
  term, shown, ema = step_lib.lecam_term(config.loss, real, fake, {"real": 1.0, "fake": -1.0})
  assert np.isclose(ema["real"], 0.9 + 0.1 * 0.5)  # mean(real) = 0.5, mean(fake) = -1.3 / 3
  assert np.isclose(ema["fake"], -0.9 + 0.1 * (-1.3 / 3))
  assert np.isclose(term, 0.5 * losses.lecam(real, fake, ema["real"], ema["fake"]))
  assert np.isclose(shown["lecam"], losses.lecam(real, fake, ema["real"], ema["fake"]))


def test_projection_discriminator_adds_the_class_term():
  config = load_config("cgan_pd", **{"model.spectral_norm": "none", "model.arch": "dcgan",
                                     "model.conditioning": "concat"})  # any arch: a small one
  info = datasets.DatasetInfo("toy", "1", (28, 28, 1), 10, tuple("abcdefghij"))
  players, _, _ = players_lib.build(config, info, 1)
  d = nnx.merge(players.d_def, players.params["d"], players.model_state["d"])
  images = jax.random.uniform(jax.random.PRNGKey(0), (3, 28, 28, 1), minval=-1.0)
  labels = jnp.array([0, 3, 9])
  features = d.body(images)
  expected = d.head(features)[:, 0] + jnp.sum(features * d.projection(labels), -1)
  np.testing.assert_allclose(d(images, labels)["logit"], expected, rtol=1e-5, atol=1e-5)


def test_the_step_gives_a_projection_discriminator_the_real_labels():
  config = load_config("cgan_pd", **{"model.arch": "mlp", "model.conditioning": "concat",
                                     "d_steps": 1})
  info = datasets.DatasetInfo("toy", "1", (8, 8, 1), 10, tuple("abcdefghij"))
  players, g_tx, d_tx = players_lib.build(config, info, 10)
  state = players_lib.init_state(players, g_tx, d_tx, False, jax.random.PRNGKey(0))
  step = jax.jit(step_lib.make_train_step(config, players, g_tx, d_tx))
  images = jax.random.randint(jax.random.PRNGKey(1), (1, 16, 8, 8, 1), 0, 256).astype(jnp.uint8)
  after = [step(state, {"image": images, "label": jnp.full((1, 16), y, jnp.int32)},
                jax.random.PRNGKey(2))[0].params["d"] for y in (1, 2)]
  assert not all(np.array_equal(a, b) for a, b in zip(*map(jax.tree.leaves, after)))


def test_diff_augment_keys_identity_and_gradients():
  x = jax.random.uniform(jax.random.PRNGKey(0), (4, 32, 32, 3), minval=-1.0)
  k1, k2 = jax.random.PRNGKey(1), jax.random.PRNGKey(2)
  assert augment.diff_augment(x, "", k1) is x
  for policy in ("color", "translation", "cutout", POLICY):
    a = augment.diff_augment(x, policy, k1)
    assert a.shape == x.shape
    np.testing.assert_array_equal(a, augment.diff_augment(x, policy, k1))
    assert not np.array_equal(a, augment.diff_augment(x, policy, k2)), policy
    assert not np.array_equal(a, x), policy
  config = load_config("dcgan", **{"augment.policy": POLICY})
  info = datasets.DatasetInfo("toy", "1", (32, 32, 3), 10, tuple("abcdefghij"))
  players, _, _ = players_lib.build(config, info, 1)
  z, labels = players_lib.sample_latent(config.model, 10, k1, 4)

  def loss(g_params):
    images = players.generate(g_params, players.model_state["g"], z, labels, train=True)[0]
    return jnp.sum(augment.diff_augment(images, POLICY, k2) ** 2)

  grads = jax.tree.leaves(jax.jit(jax.grad(loss))(players.params["g"]))
  assert all(np.all(np.isfinite(g)) for g in grads)
  assert sum(float(jnp.sum(jnp.abs(g))) for g in grads) > 0


def test_toolkit_options_refuse_bad_values_and_combinations():
  with pytest.raises(cfg.ConfigError, match="augment.policy"):
    gan_options.validate(load_config("sngan", **{"augment.policy": "color,flip"}))
  with pytest.raises(cfg.ConfigError, match="d_projection needs a conditional generator"):
    gan_options.validate(load_config("sngan", **{"model.d_projection": True}))
  with pytest.raises(cfg.ConfigError, match="needs config.model.arch='resnet'"):
    gan_options.validate(load_config("cgan_pd", **{"model.arch": "dcgan"}))
  with pytest.raises(cfg.ConfigError, match="g_shared_embedding needs a conditional ResNet"):
    gan_options.validate(load_config("sngan", **{"model.g_shared_embedding": 8}))
  info = datasets.DatasetInfo("odd", "1", (30, 30, 3), 10, tuple("abcdefghij"))
  with pytest.raises(cfg.ConfigError, match="'resnet' has no layout for \\(30, 30, 3\\)"):
    players_lib.build(load_config("sngan"), info, 1)  # 30 -> 15: one up-sampling stage


@pytest.mark.parametrize("arch,shared", [("mlp", 0), ("dcgan", 0), ("keras_acgan", 0),
                                         ("resnet", 0), ("resnet", 8)])
def test_spectral_norm_wraps_every_kernel_of_every_arch(arch, shared):
  config = load_config("cgan_pd", **{"model.arch": arch, "model.spectral_norm": "g_and_d",
                                     "model.conditioning": "concat",
                                     "model.g_shared_embedding": shared})
  info = datasets.DatasetInfo("toy", "1", (28, 28, 1), 10, tuple("abcdefghij"))
  players, _, _ = players_lib.build(config, info, 1)  # G runs once here, under eval_shape
  for player in ("g", "d"):
    kernels = [p for p in jax.tree.leaves(players.params[player]) if p.ndim >= 2]
    vectors = jax.tree.leaves(nnx.state(players.model_state[player], spectral.SpectralVector))
    # D: every kernel and the projection table; G: every kernel but the class gains' tables
    gains = 0 if player == "d" or arch != "resnet" else len(
        [p for p in kernels if p.ndim == 2 and p.shape[0] == 10])  # [classes, features]
    assert len(vectors) == len(kernels) - gains > 0, (player, len(vectors), len(kernels))


# Every switch at once: ResNet, conditional batch norm from a shared class embedding, spectral
# norm in G and D, hinge loss, projection with an auxiliary head, DiffAugment's whole policy and
# LeCam.
EVERYTHING = {"model.spectral_norm": "g_and_d", "model.g_shared_embedding": 8,
              "augment.policy": POLICY, "loss.lecam_weight": 0.1, "model.aux_classifier": True,
              "loss.aux_weight_real": 1.0, "loss.aux_weight_g": 1.0, "g_ema_decay": 0.9}
EXAMPLES = 64


@pytest.mark.parametrize("dataset,shape", [("cifar10", (32, 32, 3)), ("mnist", (28, 28, 1))])
def test_every_switch_trains_resumes_samples_and_evaluates(dataset, shape, tmp_path):
  def config(epochs):
    c = load_config("cgan_pd", **EVERYTHING)
    c.dataset, c.data_dir = dataset, str(tmp_path / "tfds")
    c.train_examples, c.validation_split = 0, 0.0
    c.batch_size, c.eval_batch_size, c.d_steps, c.num_epochs = 16, 32, 2, epochs
    c.cas_epochs = 1
    return c

  mesh = parallel.make_mesh()
  with tfds.testing.mock_data(num_examples=EXAMPLES):
    # Resumed bitwise once (the cheaper shape): shapes change nothing that resume saves.
    resume = dataset == "mnist"
    if resume:
      gan_train.train_and_evaluate(config(1), str(tmp_path / "b"))
    resumed, _ = gan_train.train_and_evaluate(config(2), str(tmp_path / "b"))
    if resume:
      straight, _ = gan_train.train_and_evaluate(config(2), str(tmp_path / "a"))
      for a, b in zip(jax.tree.leaves(straight), jax.tree.leaves(resumed)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert int(resumed.step) == 2 * (EXAMPLES // 32)
    vectors = [v for p, v in jax.tree_util.tree_leaves_with_path(resumed.model_state["d"])
               if "u" in jax.tree_util.keystr(p)]
    assert vectors and "lecam" in resumed.model_state
    run, players = players_lib.restore(str(tmp_path / "b"), mesh)
    images, labels = players_lib.generate(run.config, players, run.state, 20,
                                          jax.random.PRNGKey(0))
    assert images.shape == (20,) + shape and images.dtype == np.uint8
    clf = load_config("cnn_seed")
    clf.dataset, clf.data_dir, clf.num_epochs = dataset, str(tmp_path / "tfds"), 1
    clf.train_examples, clf.validation_split, clf.batch_size = 0, 0.0, 32
    cnn_train.train_and_evaluate(clf, str(tmp_path / "clf"))
    out = evaluation.evaluate(run.config, run.info, players, run.state, mesh,
                              classifier_workdir=str(tmp_path / "clf"), num=32)
  assert np.isfinite(out["fid"]) and "conditional_accuracy" in out


def test_stabilizers_sweep_members_are_valid_on_every_preset():
  from common import sweeps  # pylint: disable=g-import-not-at-top
  from configs import sngan  # pylint: disable=g-import-not-at-top
  members = sngan.get_sweep("stabilizers")
  assert len(members) == 8
  sweeps.check_names(members)
  for preset in ("", "cpu", "test", "cifar10"):
    for member in members:
      gan_options.validate(load_config("sngan", preset, **sweeps.config_overrides(member)))
  with pytest.raises(ValueError, match="known sweeps"):
    sngan.get_sweep("nope")
