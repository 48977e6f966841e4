"""GAN losses, from logits (log-sigmoid), never from log of a probability.

Notation: `real` and `fake` are the discriminator's logits on real images x and on G(z).
D(x) = sigmoid(real). The course's minimax game:
  J(D) = -1/2 E[log D(x)] - 1/2 E[log(1 - D(G(z)))],   J(G) = -J(D),
so the generator minimizes E[log(1 - D(G(z)))]; log(1 - sigmoid(l)) = -softplus(l).
"""

import jax
import jax.numpy as jnp
import optax


def bce(logits: jax.Array, target: float) -> jax.Array:
  """Binary cross-entropy against a constant target in [0, 1], per example."""
  return optax.sigmoid_binary_cross_entropy(logits, jnp.full_like(logits, target))


def d_minimax(real: jax.Array, fake: jax.Array, real_target: float = 1.0) -> jax.Array:
  """J(D); real_target < 1 is one-sided label smoothing (e.g. 0.9)."""
  return 0.5 * jnp.mean(bce(real, real_target)) + 0.5 * jnp.mean(bce(fake, 0.0))


def g_minimax(fake: jax.Array) -> jax.Array:
  """E[log(1 - D(G(z)))]: what G minimizes in the minimax game (saturates when D wins)."""
  return -jnp.mean(jax.nn.softplus(fake))


def g_non_saturating(fake: jax.Array) -> jax.Array:
  """-E[log D(G(z))]: the same fixed point with strong gradients early in training."""
  return jnp.mean(jax.nn.softplus(-fake))


def d_wasserstein(real: jax.Array, fake: jax.Array) -> jax.Array:
  """The critic's loss E[C(G(z))] - E[C(x)]; its negation estimates the Wasserstein distance."""
  return jnp.mean(fake) - jnp.mean(real)


def g_wasserstein(fake: jax.Array) -> jax.Array:
  return -jnp.mean(fake)


def d_hinge(real: jax.Array, fake: jax.Array) -> jax.Array:
  """The hinge loss (Lim and Ye 2017; Miyato et al. 2018):
  E[relu(1 - D(x))] + E[relu(1 + D(G(z)))]."""
  return jnp.mean(jax.nn.relu(1.0 - real)) + jnp.mean(jax.nn.relu(1.0 + fake))


g_hinge = g_wasserstein  # the hinge generator loss -E[D(G(z))] is WGAN's


def lecam(real: jax.Array, fake: jax.Array, ema_real: jax.Array, ema_fake: jax.Array) -> jax.Array:
  """LeCam regularization (Tseng et al. 2021) as their code computes it:
  E[relu(D(x) - ema_fake)^2] + E[relu(ema_real - D(G(z)))^2], the EMAs of D's past outputs."""
  return (jnp.mean(jax.nn.relu(real - ema_fake) ** 2)
          + jnp.mean(jax.nn.relu(ema_real - fake) ** 2))


def projection(features: jax.Array, embedding: jax.Array) -> jax.Array:
  """The projection discriminator's class term (Miyato and Koyama 2018): <embed(y), phi(x)>,
  per example, for features and the labels' embeddings, both [B, F]."""
  return jnp.sum(features * embedding, axis=-1)


def gradient_penalty(critic_fn, real: jax.Array, fake: jax.Array, key: jax.Array) -> jax.Array:
  """WGAN-GP: E[(||grad_x C(x_hat)||_2 - 1)^2] on x_hat = eps x + (1 - eps) G(z), eps ~ U[0, 1].

  critic_fn maps a batch of images to per-example logits [B].
  """
  eps = jax.random.uniform(key, (real.shape[0],) + (1,) * (real.ndim - 1), real.dtype)
  x_hat = eps * real + (1.0 - eps) * fake
  grads = jax.grad(lambda x: jnp.sum(critic_fn(x)))(x_hat)
  norms = jnp.sqrt(jnp.sum(grads.reshape(grads.shape[0], -1) ** 2, axis=-1) + 1e-12)
  return jnp.mean((norms - 1.0) ** 2)


def aux_cross_entropy(class_logits: jax.Array, labels: jax.Array) -> jax.Array:
  """ACGAN's auxiliary classification loss."""
  return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(class_logits, labels))


def clip_weights(params, c: float):
  """WGAN's weight clipping: every critic parameter into [-c, c].

  Kept over optax.projections.projection_box, whose scalar bounds fail on nnx.State trees
  (optax 0.2.8: it maps jnp.clip over the bounds as trees too)."""
  return jax.tree.map(lambda p: jnp.clip(p, -c, c), params)


G_LOSSES = {"minimax": g_minimax, "non_saturating": g_non_saturating,
            "wasserstein": g_wasserstein, "hinge": g_hinge}  # gan.options.G_LOSSES names them
