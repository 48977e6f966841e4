"""common.nn.kernels equals the lax / flax references, forward and gradients."""

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from jax import lax

from common.nn import kernels

RTOL = 1e-5


def _dn(nsp):
  return ("NWC", "WIO", "NWC") if nsp == 1 else ("NHWC", "HWIO", "NHWC")


def _close(actual, expected, tol: float = RTOL):
  for a, e in zip(jax.tree.leaves(actual), jax.tree.leaves(expected)):
    assert a.shape == e.shape
    scale = float(jnp.abs(e).max()) + 1e-12
    np.testing.assert_allclose(np.asarray(a) / scale, np.asarray(e) / scale, atol=tol, rtol=0)


def _check(fn, ref, x, w, b, wrt=(0, 1, 2)):
  """Forward, and the VJP of a random cotangent w.r.t. the args in `wrt` (one jit per side)."""
  wrt = (wrt,) if isinstance(wrt, int) else wrt
  r = jax.random.normal(jax.random.key(9), jax.eval_shape(ref, x, w, b).shape)

  @partial(jax.jit, static_argnums=0)
  def run(f):
    args = [x, w, b]
    y, vjp = jax.vjp(lambda *d: f(*[d[wrt.index(i)] if i in wrt else a
                                   for i, a in enumerate(args)]), *[args[i] for i in wrt])
    return y, vjp(r)

  _close(run(fn), run(ref))


def _args(spatial, cin, cout, k, bias=True):
  kx, kw, kb = jax.random.split(jax.random.key(len(spatial) * 100 + cin * 10 + k), 3)
  x = jax.random.normal(kx, (2,) + spatial + (cin,))
  w = jax.random.normal(kw, (k,) * len(spatial) + (cin, cout))
  return x, w, jax.random.normal(kb, (cout,)) if bias else None


CONV_CASES = [  # spatial, cin, cout, kernel, stride, padding
    ((9, 8), 3, 5, 3, 1, "SAME"),     # few input channels: shifted-matmul forward
    ((9, 8), 6, 5, 3, 2, "SAME"),     # strided: im2col dW
    ((8, 8), 6, 7, 4, 2, "SAME"),     # even kernel, strided
    ((7, 7), 6, 1, 2, 1, "SAME"),     # even kernel, one output channel: scattered dx, shifted dW
    ((11,), 6, 2, 3, 1, "VALID"),     # few output channels, 1-D
    ((12, 9), 24, 16, 3, 1, "SAME"),  # Winograd: forward, dx and dW
    ((9, 8), 6, 5, 3, 1, "VALID"),
    ((9, 9), 1, 6, 3, 2, "VALID"),    # stride leaves a trailing row unused
    ((11,), 6, 5, 3, 1, "SAME"),
    ((11,), 2, 3, 4, 2, "SAME"),
    ((12,), 6, 1, 5, 2, "VALID"),
]


@pytest.mark.parametrize("spatial,cin,cout,k,s,padding", CONV_CASES)
def test_conv_matches_lax(spatial, cin, cout, k, s, padding):
  x, w, b = _args(spatial, cin, cout, k)
  strides = (s,) * len(spatial)
  ref = lambda x, w, b: lax.conv_general_dilated(
      x, w, strides, padding, dimension_numbers=_dn(len(spatial))) + b
  _check(lambda x, w, b: kernels.conv(x, w, b, s, padding), ref, x, w, b)


@pytest.mark.parametrize("spatial,cin,cout,k,s,padding", [c for c in CONV_CASES if c[2] > 4])
def test_conv_second_order_matches_lax(spatial, cin, cout, k, s, padding):
  """A gradient penalty's gradient: d/d(w, b, x) of ||d conv(relu(x)) / dx||^2."""
  x, w, b = _args(spatial, cin, cout, k)
  strides = (s,) * len(spatial)
  ref = lambda x, w, b: lax.conv_general_dilated(
      x, w, strides, padding, dimension_numbers=_dn(len(spatial))) + b
  ours = lambda x, w, b: kernels.conv(x, w, b, s, padding)

  def penalty(conv, x, w, b):
    dx = jax.grad(lambda x: jnp.sum(jnp.tanh(conv(x, w, b))))(x)
    return jnp.sum(dx ** 2)

  grad = jax.jit(jax.grad(penalty, argnums=(1, 2, 3)), static_argnums=0)
  # Differentiating twice compounds the summation-order differences of Winograd's transforms:
  # measured 1.3e-5 of the scale on jax 0.12.1 (3.13), under 1e-5 on jax 0.10.2.
  _close(grad(ours, x, w, b), grad(ref, x, w, b), tol=3 * RTOL)


def test_conv_without_bias_and_input_gradient():
  x, w, _ = _args((8, 8), 4, 6, 3, bias=False)
  ref = lambda x, w, b: lax.conv_general_dilated(x, w, (1, 1), "SAME",
                                                 dimension_numbers=_dn(2))
  _check(lambda x, w, b: kernels.conv(x, w, None, (1, 1), "SAME"), ref, x, w, None, wrt=1)


def test_conv_inside_fori_loop():
  """The case the kernels exist for: gradients inside a while-loop body."""
  x, w, b = _args((7, 7), 6, 8, 3)
  ref = lambda x, w, b: lax.conv_general_dilated(x, w, (2, 2), "SAME",
                                                 dimension_numbers=_dn(2)) + b

  def loop(f):
    g = jax.grad(lambda x, w, b: jnp.tanh(f(x, w, b)).sum(), (0, 1, 2))
    body = lambda i, acc: jax.tree.map(jnp.add, acc, g(x * (1.0 + i), w, b))
    return jax.jit(lambda: lax.fori_loop(0, 2, body, jax.tree.map(jnp.zeros_like, (x, w, b))))()

  _close(loop(lambda x, w, b: kernels.conv(x, w, b, 2, "SAME")), loop(ref))


CONV_T_CASES = [  # spatial, cin, cout, kernel, stride, padding
    ((4, 4), 6, 5, 4, 2, "SAME"),     # DCGAN up-sampling layer
    ((4, 5), 6, 1, 4, 2, "SAME"),     # one output channel: shifted-matmul dx
    ((4, 4), 3, 4, 3, 2, "VALID"),
    ((5, 5), 3, 4, 3, 1, "SAME"),
    ((6,), 4, 3, 4, 2, "SAME"),
    ((5,), 3, 2, 3, 2, "VALID"),
]


@pytest.mark.parametrize("spatial,cin,cout,k,s,padding", CONV_T_CASES)
def test_conv_transpose_matches_flax(spatial, cin, cout, k, s, padding):
  nsp = len(spatial)
  layer = nnx.ConvTranspose(cin, cout, (k,) * nsp, (s,) * nsp, padding=padding,
                            rngs=nnx.Rngs(0))
  x, _, b = _args(spatial, cin, cout, k)
  layer.bias[...] = b
  w = layer.kernel[...]
  _close(kernels.conv_transpose(x, w, b, s, padding), layer(x))
  ref = lambda x, w, b: lax.conv_transpose(x, w, (s,) * nsp, padding,
                                           dimension_numbers=_dn(nsp)) + b
  _check(lambda x, w, b: kernels.conv_transpose(x, w, b, s, padding), ref, x, w, b)


@pytest.mark.parametrize("shape,kernel,cout,window", [
    ((3, 12, 11, 1), (3, 3), 8, 2),   # the course CNN's input layer, odd pooled size
    ((2, 11, 10, 3), (3, 2), 4, (2, 3)),
    ((3, 21, 2), (5,), 6, 2),
])
def test_conv_relu_maxpool_matches_unfused(shape, kernel, cout, window):
  kx, kw, kb = jax.random.split(jax.random.key(1), 3)
  x = jax.random.normal(kx, shape)
  w = jax.random.normal(kw, kernel + (shape[-1], cout))
  b = 0.3 * jax.random.normal(kb, (cout,))
  ref = lambda x, w, b: kernels.max_pool(jax.nn.relu(lax.conv_general_dilated(
      x, w, (1,) * len(kernel), "VALID", dimension_numbers=_dn(len(kernel))) + b), window)
  _check(lambda x, w, b: kernels.conv_relu_maxpool(x, w, b, window), ref, x, w, b, wrt=(1, 2))


def test_max_pool_matches_reduce_window():
  x = jax.random.normal(jax.random.key(0), (2, 9, 7, 3))
  ref = lambda x: lax.reduce_window(x, -jnp.inf, lax.max, (1, 2, 3, 1), (1, 2, 3, 1), "VALID")
  _close(kernels.max_pool(x, (2, 3)), ref(x))
  grad = lambda f: jax.grad(lambda x: (f(x) ** 2).sum())(x)
  _close(grad(lambda x: kernels.max_pool(x, (2, 3))), grad(ref))
  x1 = jax.random.normal(jax.random.key(1), (2, 9, 3))
  _close(kernels.max_pool(x1, 2), lax.reduce_window(x1, -jnp.inf, lax.max, (1, 2, 1), (1, 2, 1),
                                                    "VALID"))


def test_other_backends_use_plain_lax(monkeypatch):
  monkeypatch.setattr(kernels, "_fast_path", lambda: False)
  x, w, b = _args((8, 8), 3, 4, 3)
  jaxpr = str(jax.make_jaxpr(jax.grad(lambda w: kernels.conv(x, w, b, 2, "SAME").sum()))(w))
  assert "custom_vjp" not in jaxpr
  ref = lax.conv_general_dilated(x, w, (2, 2), "SAME", dimension_numbers=_dn(2)) + b
  _close(kernels.conv(x, w, b, 2, "SAME"), ref)


@pytest.mark.parametrize("spatial,k,factor", [((5, 4), 5, 2), ((4, 4), 2, 2), ((3, 4), 3, 3),
                                              ((6,), 4, 2)])
def test_upsample_conv_matches_upsample_then_conv(spatial, k, factor):
  x, w, b = _args(spatial, 6, 5, k)

  def upsampled(x):
    for axis in range(1, x.ndim - 1):
      x = jnp.repeat(x, factor, axis=axis)
    return x

  ref = lambda x, w, b: lax.conv_general_dilated(
      upsampled(x), w, (1,) * len(spatial), "SAME", dimension_numbers=_dn(len(spatial))) + b
  _check(lambda x, w, b: kernels.upsample_conv(x, w, b, factor), ref, x, w, b)


@pytest.mark.parametrize("spatial", [(7, 10), (14, 14), (3, 4)])
def test_winograd_3x3_matches_lax(spatial):
  """Stride-1 3x3 convs with more than a few channels take Winograd F(2x2, 3x3) on CPU."""
  x, w, _ = _args(spatial, 16, 24, 3, bias=False)
  ref = lax.conv_general_dilated(x, w, (1, 1), "VALID", dimension_numbers=_dn(2),
                                 precision=lax.Precision.HIGHEST)
  _close(jax.jit(kernels._winograd_3x3)(x, w), ref)  # pylint: disable=protected-access


def test_winograd_3x3_weight_gradient_matches_autodiff():
  x, w, _ = _args((9, 6), 8, 12, 3, bias=False)
  g = jax.random.normal(jax.random.key(3), (2, 7, 4, 12))
  _, vjp = jax.vjp(lambda w: lax.conv_general_dilated(
      x, w, (1, 1), "VALID", dimension_numbers=_dn(2), precision=lax.Precision.HIGHEST), w)
  _close(jax.jit(kernels._winograd_3x3_dw)(x, g), vjp(g)[0])  # pylint: disable=protected-access
