"""Every GAN loss and its gradient against numpy formulas written from the papers, on asymmetric
inputs (non-zero means, unequal real and fake batches), so that a sign or a scale can't hide; and
each variant's D and G loss as its config composes them (gan/step.py)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gan import losses
from gan import step as step_lib
from conftest import load_config

VARIANTS = ("gan", "dcgan", "cgan", "acgan", "wgan", "wgan_gp")


def _inputs():
  """Real logits: 7, mean about +1.3; fake logits: 5, mean about -0.8; 4-class logits."""
  rng = np.random.RandomState(0)
  real = rng.normal(1.3, 1.1, 7)
  fake = rng.normal(-0.8, 0.9, 5)
  class_logits = rng.normal(0.4, 2.0, (5, 4))
  labels = np.array([0, 3, 3, 1, 2])
  return real, fake, class_logits, labels


def _softplus(x):
  return np.log1p(np.exp(-np.abs(x))) + np.maximum(x, 0.0)


def _sigmoid(x):
  return 1.0 / (1.0 + np.exp(-x))


def _np_d_minimax(real, fake, t):
  """Value and (d/d real, d/d fake) of 1/2 E[BCE(real, t)] + 1/2 E[BCE(fake, 0)]."""
  value = (0.5 * np.mean(t * _softplus(-real) + (1 - t) * _softplus(real))
           + 0.5 * np.mean(_softplus(fake)))
  return value, (0.5 * (_sigmoid(real) - t) / len(real), 0.5 * _sigmoid(fake) / len(fake))


NP_G = {  # value and gradient of each generator loss, from fake logits f
    "minimax": lambda f: (np.mean(np.log(1 - _sigmoid(f))), -_sigmoid(f) / len(f)),
    "non_saturating": lambda f: (-np.mean(np.log(_sigmoid(f))), -_sigmoid(-f) / len(f)),
    "wasserstein": lambda f: (-np.mean(f), -np.ones_like(f) / len(f)),
}


def _np_aux(class_logits, labels):
  """Mean cross-entropy and its gradient: (softmax - onehot) / N."""
  shifted = class_logits - class_logits.max(1, keepdims=True)
  p = np.exp(shifted) / np.exp(shifted).sum(1, keepdims=True)
  onehot = np.eye(class_logits.shape[1])[labels]
  return -np.mean(np.log(np.sum(p * onehot, 1))), (p - onehot) / len(labels)


def _value_and_grad(fn, *args):
  value, grads = jax.value_and_grad(fn, argnums=tuple(range(len(args))))(
      *[jnp.asarray(a, jnp.float32) for a in args])
  return float(value), [np.asarray(g) for g in grads]


def _close(got, want):
  np.testing.assert_allclose(got, want, rtol=2e-5, atol=1e-7)


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_discriminator_minimax_loss_and_gradient(smoothing):
  real, fake, _, _ = _inputs()
  value, grads = _value_and_grad(lambda r, f: losses.d_minimax(r, f, 1.0 - smoothing), real, fake)
  want, want_grads = _np_d_minimax(real, fake, 1.0 - smoothing)
  _close(value, want)
  for g, w in zip(grads, want_grads):
    _close(g, w)


@pytest.mark.parametrize("name", sorted(NP_G))
def test_each_generator_loss_and_gradient(name):
  _, fake, _, _ = _inputs()
  value, (grad,) = _value_and_grad(losses.G_LOSSES[name], fake)
  want, want_grad = NP_G[name](fake)
  _close(value, want)
  _close(grad, want_grad)


def test_critic_loss_and_gradient():
  real, fake, _, _ = _inputs()
  value, (g_real, g_fake) = _value_and_grad(losses.d_wasserstein, real, fake)
  _close(value, np.mean(fake) - np.mean(real))
  _close(g_real, -np.ones(7) / 7)
  _close(g_fake, np.ones(5) / 5)


def test_auxiliary_cross_entropy_and_gradient():
  _, _, class_logits, labels = _inputs()
  value, (grad,) = _value_and_grad(lambda c: losses.aux_cross_entropy(c, labels), class_logits)
  want, want_grad = _np_aux(class_logits, labels)
  _close(value, want)
  _close(grad, want_grad)


def test_gradient_penalty_of_a_nonlinear_critic_and_its_gradient():
  """C(x) = sum(w tanh(x)): grad_x C = w (1 - tanh(x)^2) at x_hat = eps real + (1 - eps) fake."""
  rng = np.random.RandomState(1)
  real, fake = rng.normal(0.5, 1.0, (6, 3, 2)), rng.normal(-0.3, 0.7, (6, 3, 2))
  w = rng.normal(0.0, 1.5, (3, 2))
  key = jax.random.PRNGKey(4)
  def critic(w):
    return lambda x: jnp.sum(w * jnp.tanh(x), axis=(1, 2))
  value, (grad_w,) = _value_and_grad(
      lambda w: losses.gradient_penalty(critic(w), jnp.asarray(real, jnp.float32),
                                        jnp.asarray(fake, jnp.float32), key), w)
  eps = np.asarray(jax.random.uniform(key, (6, 1, 1), jnp.float32)).astype(np.float64)
  s = 1.0 - np.tanh(eps * real + (1.0 - eps) * fake) ** 2       # [6, 3, 2]
  norms = np.sqrt(np.sum((w * s) ** 2, axis=(1, 2)))           # ||grad_x C(x_hat_i)||
  _close(value, np.mean((norms - 1.0) ** 2))
  # d/dw of mean (norm_i - 1)^2 = mean 2 (norm_i - 1) w s_i^2 / norm_i
  want = np.mean((2 * (norms - 1) / norms)[:, None, None] * w * s ** 2, axis=0)
  np.testing.assert_allclose(grad_w, want, rtol=1e-4, atol=1e-6)


def test_weight_clipping_clips_every_leaf_both_ways():
  params = {"a": jnp.array([-0.5, -0.005, 0.0, 0.02]), "b": {"c": jnp.array([[3.0, -0.01]])}}
  clipped = losses.clip_weights(params, 0.01)
  _close(clipped["a"], [-0.01, -0.005, 0.0, 0.01])
  _close(clipped["b"]["c"], [[0.01, -0.01]])


def _variant_d_loss(loss, real, fake, class_real, class_fake, labels, fake_labels):
  """The variant's D loss from its config, in numpy (the gradient penalty aside)."""
  if loss.d == "wasserstein":
    value = np.mean(fake) - np.mean(real)
  else:
    value = _np_d_minimax(real, fake, 1.0 - loss.label_smoothing)[0]
  return (value + loss.aux_weight_real * _np_aux(class_real, labels)[0]
          + loss.aux_weight_fake * _np_aux(class_fake, fake_labels)[0])


@pytest.mark.parametrize("name", VARIANTS)
def test_each_variants_d_and_g_loss_as_its_config_composes_them(name):
  config = load_config(name)
  aux = config.model.aux_classifier
  real, fake, class_fake, fake_labels = _inputs()
  class_real = np.random.RandomState(2).normal(-0.2, 1.5, (7, 4))
  labels = np.array([1, 1, 0, 2, 3, 3, 0])
  f32 = lambda a: jnp.asarray(a, jnp.float32)  # pylint: disable=g-long-lambda

  def d_loss(real, fake, class_real, class_fake):
    value, _ = step_lib.d_adversarial(config.loss, real, fake)
    if aux:
      value += step_lib.d_auxiliary(config.loss, {"class_logits": class_real},
                                    {"class_logits": class_fake}, labels, fake_labels)[0]
    return value

  value, grads = _value_and_grad(d_loss, real, fake, class_real, class_fake)
  args = (real, fake, class_real, class_fake, labels, fake_labels)
  _close(value, _variant_d_loss(config.loss, *args))
  eps = 1e-4  # central differences of the numpy formula, one logit at a time
  for i, x in enumerate((real, fake)):
    for j in range(len(x)):
      up, down = [list(args) for _ in range(2)]
      up[i], down[i] = x + eps * (np.arange(len(x)) == j), x - eps * (np.arange(len(x)) == j)
      numeric = (_variant_d_loss(config.loss, *up)
                 - _variant_d_loss(config.loss, *down)) / (2 * eps)
      np.testing.assert_allclose(grads[i][j], numeric, rtol=1e-4, atol=1e-6)

  g_value, shown = step_lib.g_loss(config.loss, {"logit": f32(fake),
                                                 "class_logits": f32(class_fake)},
                                   jnp.asarray(fake_labels), aux)
  want = NP_G[config.loss.g](fake)[0]
  if aux:
    want += config.loss.aux_weight_g * _np_aux(class_fake, fake_labels)[0]
  _close(float(g_value), want)
  _close(float(shown["g_loss"]), want)


class _LinearPlayers:
  """G: a learned constant image b, whatever z; D: a linear critic x . w. Simple enough for numpy
  to follow the whole step; the step itself (gan/step.py) is the real one."""
  dtype, num_classes = jnp.float32, 10

  def generate(self, params, state, z, labels, **_):
    return jnp.broadcast_to(params["b"], (z.shape[0],) + params["b"].shape), state

  def discriminate(self, params, state, images, labels, **_):
    return {"logit": images.reshape(images.shape[0], -1) @ params["w"]}, state


def _np_step(loss, d_steps, real, w, b, lr):
  """The step in numpy: d_steps SGD updates of w on the real batches, then one of b.
  Returns (mean D loss, G loss, w, b)."""
  d_losses = []
  for k in range(d_steps):
    r, f = real[k] @ w, b @ w
    if loss.d == "wasserstein":
      value, grad = f - np.mean(r), b - real[k].mean(0)
    else:
      t = 1.0 - loss.label_smoothing
      value = 0.5 * np.mean(t * _softplus(-r) + (1 - t) * _softplus(r)) + 0.5 * _softplus(f)
      grad = 0.5 * np.mean((_sigmoid(r) - t)[:, None] * real[k], 0) + 0.5 * _sigmoid(f) * b
    norm = np.linalg.norm(w)  # a linear critic's input gradient is w everywhere
    value += loss.gp_weight * (norm - 1) ** 2
    grad = grad + loss.gp_weight * 2 * (norm - 1) * w / norm
    w = w - lr * grad
    w = np.clip(w, -loss.clip, loss.clip) if loss.clip > 0 else w
    d_losses.append(value)
  f = b @ w
  g_value = NP_G[loss.g](np.full(4, f))[0]
  df = {"minimax": -_sigmoid(f), "non_saturating": -_sigmoid(-f), "wasserstein": -1.0}[loss.g]
  return np.mean(d_losses), g_value, w, b - lr * df * w


@pytest.mark.parametrize("name", [v for v in VARIANTS if v != "acgan"])
def test_each_variants_whole_step_with_linear_players_equals_numpy(name):
  """D's loss with its penalty weight, clipping and d_steps, G's loss, and both updates."""
  import optax  # pylint: disable=g-import-not-at-top
  from common.run import loop  # pylint: disable=g-import-not-at-top
  config, lr = load_config(name), 0.05
  rng = np.random.RandomState(3)
  real = rng.normal(0.3, 1.0, (config.d_steps, 4, 6))
  w, b = rng.normal(0.1, 0.3, 6), rng.normal(-0.2, 0.5, 6)
  step = jax.jit(step_lib.make_train_step(config, _LinearPlayers(), optax.sgd(lr), optax.sgd(lr)))
  params = {"g": {"b": jnp.asarray(b, jnp.float32)}, "d": {"w": jnp.asarray(w, jnp.float32)}}
  state = loop.TrainState(step=jnp.int32(0), key=jax.random.PRNGKey(0), params=params,
                          opt_state={"g": optax.sgd(lr).init(params["g"]),
                                     "d": optax.sgd(lr).init(params["d"])},
                          model_state={"g": {}, "d": {}})
  batch = {"image": jnp.asarray(real, jnp.float32),
           "label": jnp.zeros((config.d_steps, 4), jnp.int32)}
  new, metrics = step(state, batch, jax.random.PRNGKey(1))
  d_loss, g_loss, w_new, b_new = _np_step(config.loss, config.d_steps, real, w, b, lr)
  np.testing.assert_allclose(metrics["d_loss"], d_loss, rtol=1e-4)
  np.testing.assert_allclose(metrics["g_loss"], g_loss, rtol=1e-4)
  np.testing.assert_allclose(new.params["d"]["w"], w_new, rtol=1e-4, atol=1e-6)
  np.testing.assert_allclose(new.params["g"]["b"], b_new, rtol=1e-4, atol=1e-6)
