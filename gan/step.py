"""One adversarial training step for every variant: GAN, DCGAN, cGAN, ACGAN, WGAN and WGAN-GP,
and the toolkit's switches (hinge loss, DiffAugment, LeCam; spectral norm and projection live in
the models).

The step makes `d_steps` discriminator (critic) updates, each on its own real batch, then one
generator update; the config's `loss` block chooses the terms, each a named function below.
"""

import jax
import jax.numpy as jnp
import optax

from common.data import shards
from gan import augment
from gan import losses
from gan.players import Players, ema_update, sample_latent


def d_adversarial(loss_config, real: jax.Array, fake: jax.Array) -> tuple[jax.Array, dict]:
  """The discriminator's (critic's) real/fake loss on its logits, and what it shows."""
  if loss_config.d == "wasserstein":
    return losses.d_wasserstein(real, fake), {"wasserstein": jnp.mean(real) - jnp.mean(fake)}
  if loss_config.d == "hinge":
    return losses.d_hinge(real, fake), {
        "logit_real": jnp.mean(real), "logit_fake": jnp.mean(fake),
        "acc_real": jnp.mean(real > 0), "acc_fake": jnp.mean(fake < 0)}
  # The course's rule: D(x) > 0.5 means real.
  shown = {"d_real": jnp.mean(jax.nn.sigmoid(real)), "d_fake": jnp.mean(jax.nn.sigmoid(fake)),
           "acc_real": jnp.mean(real > 0), "acc_fake": jnp.mean(fake < 0)}
  return losses.d_minimax(real, fake, 1.0 - loss_config.label_smoothing), shown


def d_auxiliary(loss_config, out_real: dict, out_fake: dict, labels: jax.Array,
                fake_labels: jax.Array) -> tuple[jax.Array, dict]:
  """ACGAN's class loss for D on real and generated images, weighted."""
  aux_real = losses.aux_cross_entropy(out_real["class_logits"], labels)
  aux_fake = losses.aux_cross_entropy(out_fake["class_logits"], fake_labels)
  loss = loss_config.aux_weight_real * aux_real + loss_config.aux_weight_fake * aux_fake
  accuracy = jnp.mean(jnp.argmax(out_real["class_logits"], -1) == labels)
  return loss, {"d_aux": aux_real + aux_fake, "aux_acc_real": accuracy}


def lecam_term(loss_config, real: jax.Array, fake: jax.Array, ema: dict) -> tuple:
  """(weighted LeCam term, what it shows, the EMAs of D's mean outputs after this update)."""
  decay = loss_config.lecam_decay
  mean = lambda x: jnp.mean(jax.lax.stop_gradient(x))
  ema = {"real": decay * ema["real"] + (1.0 - decay) * mean(real),
         "fake": decay * ema["fake"] + (1.0 - decay) * mean(fake)}
  reg = losses.lecam(real, fake, ema["real"], ema["fake"])
  return loss_config.lecam_weight * reg, {"lecam": reg}, ema


def augment_pair(policy: str, real: jax.Array, fake: jax.Array, key: jax.Array) -> tuple:
  """DiffAugment on D's real and generated batches, each from its own fold of `key`."""
  if not policy:
    return real, fake
  key = jax.random.fold_in(key, 5)  # the D update splits its key in 5: a stream of its own
  return (augment.diff_augment(real, policy, jax.random.fold_in(key, 0)),
          augment.diff_augment(fake, policy, jax.random.fold_in(key, 1)))


def g_loss(loss_config, out_fake: dict, fake_labels: jax.Array, aux: bool) -> tuple[jax.Array, dict]:
  """The generator's adversarial loss, plus ACGAN's class loss on its images."""
  loss = losses.G_LOSSES[loss_config.g](out_fake["logit"])
  shown = {}
  if aux:
    shown["g_aux"] = losses.aux_cross_entropy(out_fake["class_logits"], fake_labels)
    loss = loss + loss_config.aux_weight_g * shown["g_aux"]
  return loss, dict(shown, g_loss=loss)


def make_d_update(config, players: Players, d_tx):
  """One discriminator (critic) update on one real batch: the body `make_train_step` scans."""
  loss_config, model_config = config.loss, config.model
  aux = model_config.aux_classifier

  def d_update(carry, inputs):
    d_params, d_opt, d_state, g_params, g_state, ema = carry
    images, labels, key = inputs
    k_latent, k_gen, k_real, k_fake, k_gp = jax.random.split(key, 5)
    real = shards.to_float(images, (-1.0, 1.0), players.dtype)
    z, fake_labels = sample_latent(model_config, players.num_classes, k_latent, real.shape[0])
    fake = jax.lax.stop_gradient(
        players.generate(g_params, g_state, z, fake_labels, train=True, key=k_gen)[0])
    real, fake = augment_pair(config.augment.policy, real, fake, key)

    def loss_fn(d_params):
      out_real, state = players.discriminate(d_params, d_state, real, labels, train=True,
                                             key=k_real)
      out_fake, state = players.discriminate(d_params, state, fake, fake_labels, train=True,
                                             key=k_fake)
      loss, shown = d_adversarial(loss_config, out_real["logit"], out_fake["logit"])
      if loss_config.gp_weight > 0:
        critic = lambda x: players.discriminate(  # pylint: disable=g-long-lambda
            d_params, state, x, labels, train=True, key=k_real)[0]["logit"]
        shown["gp"] = losses.gradient_penalty(critic, real, fake, k_gp)
        loss = loss + loss_config.gp_weight * shown["gp"]
      if aux:
        aux_loss, aux_shown = d_auxiliary(loss_config, out_real, out_fake, labels, fake_labels)
        loss, shown = loss + aux_loss, dict(shown, **aux_shown)
      new_ema = ema
      if loss_config.lecam_weight > 0:
        reg, reg_shown, new_ema = lecam_term(loss_config, out_real["logit"], out_fake["logit"], ema)
        loss, shown = loss + reg, dict(shown, **reg_shown)
      return loss, (dict(shown, d_loss=loss), state, new_ema)

    grads, (shown, d_state, ema) = jax.grad(loss_fn, has_aux=True)(d_params)
    updates, d_opt = d_tx.update(grads, d_opt, d_params)
    d_params = optax.apply_updates(d_params, updates)
    if loss_config.clip > 0:
      d_params = losses.clip_weights(d_params, loss_config.clip)
    return (d_params, d_opt, d_state, g_params, g_state, ema), shown

  return d_update


def make_train_step(config, players: Players, g_tx, d_tx):
  """(state, batch [d_steps, B, ...], key) -> (state, metrics): the adversarial step."""
  loss_config, model_config = config.loss, config.model
  aux = model_config.aux_classifier
  d_update = make_d_update(config, players, d_tx)

  def train_step(state, batch, key):
    params, opt, model_state = state.params, state.opt_state, state.model_state
    d_keys = jax.random.split(jax.random.fold_in(key, 0), config.d_steps)
    uses_labels = model_config.d_conditional or aux or model_config.d_projection
    labels = batch["label"] if uses_labels else jnp.zeros_like(batch["label"])
    (d_params, d_opt, d_state, _, _, lecam_ema), d_shown = jax.lax.scan(
        d_update, (params["d"], opt["d"], model_state["d"], params["g"], model_state["g"],
                   model_state.get("lecam", {})), (batch["image"], labels, d_keys))

    k_latent, k_gen, k_disc = jax.random.split(jax.random.fold_in(key, 1), 3)
    z, fake_labels = sample_latent(model_config, players.num_classes, k_latent,
                                   batch["image"].shape[1])

    def g_loss_fn(g_params):
      fake, g_state = players.generate(g_params, model_state["g"], z, fake_labels, train=True,
                                       key=k_gen)
      if config.augment.policy:  # a fold of its own: the split above stays as it was
        fake = augment.diff_augment(fake, config.augment.policy, jax.random.fold_in(key, 2))
      out, _ = players.discriminate(d_params, d_state, fake, fake_labels, train=True, key=k_disc)
      loss, shown = g_loss(loss_config, out, fake_labels, aux)
      return loss, (shown, g_state)

    grads, (g_shown, g_state) = jax.grad(g_loss_fn, has_aux=True)(params["g"])
    updates, g_opt = g_tx.update(grads, opt["g"], params["g"])
    g_params = optax.apply_updates(params["g"], updates)
    new_model_state = {"g": g_state, "d": d_state}
    if lecam_ema:
      new_model_state["lecam"] = lecam_ema
    if config.g_ema_decay > 0:
      new_model_state["g_ema"] = ema_update(model_state["g_ema"], g_params, config.g_ema_decay,
                                            state.step)
    metrics = dict(jax.tree.map(jnp.mean, d_shown), **g_shown)
    return state.replace(params={"g": g_params, "d": d_params}, opt_state={"g": g_opt, "d": d_opt},
                         model_state=new_model_state), metrics

  return train_step
