"""Spectral normalization (Miyato et al. 2018): each kernel W divided by its largest singular value
sigma(W), estimated by one power iteration per training forward pass, as the authors' Chainer code
and PyTorch's spectral_norm (StudioGAN) do. A conv kernel [kh, kw, in, out] is the matrix
[kh * kw * in, out], as the paper reshapes it (the same singular values as its [out, in*kh*kw]).

Our own, not nnx.SpectralNorm (flax 0.12.8): that writes W / sigma into the wrapped layer's Param in
place, which raises TraceContextError inside a transform that didn't create the module (as
gan.models.build's jax.eval_shape), and it is called as (x, update_stats), not (x, *, train, key).
"""

import jax
import jax.numpy as jnp
from flax import nnx

from common.nn.layers import Conv, ConvTranspose, Dense, Embed, Layer


class SpectralVector(nnx.BatchStat):
  """The power iteration's u: a BatchStat, so it lives in the model state (and checkpoints)."""


def _normalize(x: jax.Array, eps: float = 1e-12) -> jax.Array:
  return x * jax.lax.rsqrt(jnp.sum(x * x) + eps)


def _kernel(layer: nnx.Module) -> nnx.Param:
  """The layer's one parameter of rank >= 2 (a kernel or an embedding table)."""
  found = [v for _, v in nnx.iter_graph(layer) if isinstance(v, nnx.Param) and v.ndim >= 2]
  assert len(found) == 1, f"{type(layer).__name__} has {len(found)} kernels"
  return found[0]


def power_iteration(w: jax.Array, u: jax.Array) -> tuple[jax.Array, jax.Array]:
  """(sigma, next u) for the kernel w (as a matrix [n, m]) and u [m]: one power-iteration step;
  sigma = v^T W u with u and v constants, so its gradient flows through W only, as in the paper."""
  w = w.reshape(-1, w.shape[-1]).astype(jnp.float32)
  v = jax.lax.stop_gradient(_normalize(w @ u))
  u = jax.lax.stop_gradient(_normalize(w.T @ v))
  return v @ (w @ u), u


class SpectralNorm(Layer):
  """A Dense, Conv, ConvTranspose or Embed whose kernel (or table) is W / sigma(W)."""

  def __init__(self, layer: nnx.Module, *, rngs: nnx.Rngs):
    self.layer = layer
    self.keras_name = getattr(layer, "keras_name", type(layer).__name__)
    out = _kernel(layer).shape[-1]
    self.u = SpectralVector(_normalize(jax.random.normal(rngs.params(), (out,))))

  def __call__(self, x, *, train=False, key=None):
    sigma, u = power_iteration(_kernel(self.layer)[...], self.u[...])
    if train:  # evaluation iterates from the saved u too, but keeps it
      self.u[...] = u
    # The layer rebuilt around W / sigma: writing into its Param would mutate it across traces.
    graph, params, rest = nnx.split(self.layer, nnx.Param, ...)
    params = jax.tree.map(lambda p: (p / sigma).astype(p.dtype) if p.ndim >= 2 else p, params)
    return nnx.merge(graph, params, rest)(x, train=train)


WRAPPED = (Dense, Conv, ConvTranspose, Embed)  # not the bare nnx.Embed of G's class gains


def apply(module: nnx.Module, rngs: nnx.Rngs) -> nnx.Module:
  """Wraps every Dense, Conv, ConvTranspose and Embed in `module` in SpectralNorm, in place, in
  attribute-name order; returns `module`."""

  def wrap(value):
    if isinstance(value, WRAPPED):
      return SpectralNorm(value, rngs=rngs)
    if isinstance(value, nnx.Module) and not isinstance(value, SpectralNorm):
      apply(value, rngs)
    return value

  for name, value in sorted(vars(module).items()):
    if isinstance(value, nnx.List):
      for i, item in enumerate(value):
        value[i] = wrap(item)
    elif isinstance(value, nnx.Module):
      setattr(module, name, wrap(value))
  return module
