"""DiffAugment (Zhao et al. 2020): random, differentiable transforms applied to every image D sees,
real and generated, so that gradients reach G through them. Images are [B, H, W, C] in [-1, 1];
each example draws its own transform from `key`, as the authors' code does:
  color        brightness + U[-0.5, 0.5], saturation x U[0, 2], contrast x U[0.5, 1.5]
  translation  a shift of up to 1/8 of the side in each direction, zeros filling in
  cutout       a zeroed square of half the side at a uniform position
"""

import jax
import jax.numpy as jnp

from gan.toolkit_options import AUGMENTS, policy_names


def color(x: jax.Array, key: jax.Array) -> jax.Array:
  kb, ks, kc = jax.random.split(key, 3)
  per_example = (x.shape[0], 1, 1, 1)
  x = x + (jax.random.uniform(kb, per_example, x.dtype) - 0.5)
  mean = jnp.mean(x, axis=3, keepdims=True)
  x = (x - mean) * (jax.random.uniform(ks, per_example, x.dtype) * 2.0) + mean
  mean = jnp.mean(x, axis=(1, 2, 3), keepdims=True)
  return (x - mean) * (jax.random.uniform(kc, per_example, x.dtype) + 0.5) + mean


def translation(x: jax.Array, key: jax.Array, ratio: float = 0.125) -> jax.Array:
  b, h, w, _ = x.shape
  sh, sw = int(h * ratio + 0.5), int(w * ratio + 0.5)
  ky, kx = jax.random.split(key)
  dy = jax.random.randint(ky, (b,), -sh, sh + 1)
  dx = jax.random.randint(kx, (b,), -sw, sw + 1)
  padded = jnp.pad(x, ((0, 0), (sh, sh), (sw, sw), (0, 0)))
  crop = lambda img, y0, x0: jax.lax.dynamic_slice(  # pylint: disable=g-long-lambda
      img, (y0, x0, 0), (h, w, img.shape[-1]))
  return jax.vmap(crop)(padded, sh - dy, sw - dx)


def cutout(x: jax.Array, key: jax.Array, ratio: float = 0.5) -> jax.Array:
  b, h, w, _ = x.shape
  ch, cw = int(h * ratio + 0.5), int(w * ratio + 0.5)
  ky, kx = jax.random.split(key)
  top = jax.random.randint(ky, (b, 1, 1), 0, h + (1 - ch % 2)) - ch // 2
  left = jax.random.randint(kx, (b, 1, 1), 0, w + (1 - cw % 2)) - cw // 2
  rows, cols = jnp.arange(h)[None, :, None], jnp.arange(w)[None, None, :]
  inside = (rows >= top) & (rows < top + ch) & (cols >= left) & (cols < left + cw)
  return jnp.where(inside[..., None], jnp.zeros((), x.dtype), x)


TRANSFORMS = {"color": color, "translation": translation, "cutout": cutout}
assert tuple(TRANSFORMS) == AUGMENTS


def diff_augment(x: jax.Array, policy: str, key: jax.Array) -> jax.Array:
  """The policy's transforms in the order given, each from fold_in(key, its index in AUGMENTS);
  the identity for the policy ''."""
  for name in policy_names(policy):
    x = TRANSFORMS[name](x, jax.random.fold_in(key, AUGMENTS.index(name)))
  return x
