"""Convolution building blocks that run fast on XLA:CPU and agree with the lax ops to f32 rounding.

Why this exists: our training steps run inside a `lax.fori_loop`, and inside a while-loop body
XLA:CPU does not canonicalize convolutions. Any convolution whose dimension numbers are not
exactly NHWC x HWIO -> NHWC (NWC x WIO -> NWC) is then emitted as a naive loop nest instead of an
Eigen call. Autodiff of `lax.conv_general_dilated` produces exactly such convolutions for both
gradients (dW contracts over the batch axis, dx swaps the kernel's I/O axes), which runs them
10-100x slower than the forward pass (one 3x3 64->128 dW on 7x7 maps took ~900 ms/step).
Here every gradient is a canonical convolution, an im2col dot_general, or shifted matmuls:
fwd+bwd of the GAN layers inside a fori_loop is 25-190x faster, a whole ACGAN step ~35x.

Layouts are channels-last ([B, L, C] or [B, H, W, C]) with HWIO / WIO kernels, as flax nnx.Conv.
On other backends (GPU/TPU) each function is the plain lax formulation, chosen at trace time.
"""

import itertools
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

_HI = lax.Precision.HIGHEST  # f32 on CPU anyway; keeps the references bit-comparable elsewhere
_SMALL = 4  # channel counts up to this contract badly in Eigen's conv: use shifted matmuls


def _fast_path() -> bool:
  return jax.default_backend() == "cpu"


def _dn(nsp):
  return ("NWC", "WIO", "NWC") if nsp == 1 else ("NHWC", "HWIO", "NHWC")


def _offsets(shape):
  """Every kernel offset, row-major (the order of the HWIO kernel's flattened spatial axes)."""
  return list(itertools.product(*[range(k) for k in shape]))


def _window(x, starts, sizes, strides):
  """x[:, a : a + (n-1)*s + 1 : s, ..., :] on each spatial axis: one kernel tap's inputs."""
  return x[(slice(None),) + tuple(slice(a, a + (n - 1) * s + 1, s)
                                  for a, n, s in zip(starts, sizes, strides)) + (slice(None),)]


def _pad(x, pads):
  return lax.pad(x, jnp.zeros((), x.dtype), [(0, 0, 0)] + [(lo, hi, 0) for lo, hi in pads]
                 + [(0, 0, 0)])


def _tuple(v, n):
  return (v,) * n if isinstance(v, int) else tuple(v)


def _lax_conv(x, w, strides, pads, lhs_dilation=None):
  return lax.conv_general_dilated(x, w, strides, pads, lhs_dilation=lhs_dilation,
                                  dimension_numbers=_dn(x.ndim - 2), precision=_HI)


def _strided_conv(x, w, strides, pads):
  """conv_general_dilated(x, w, strides, pads), canonical layout. For a handful of input
  channels Eigen's conv is slow (10x at Cin=1), so sum one small matmul per kernel tap; 3x3
  stride-1 convs with more channels take Winograd's F(2x2, 3x3)."""
  ks, cin = w.shape[:-2], w.shape[-2]
  if _winograd_fits(w.shape, strides):
    return _winograd_3x3(_pad(x, pads), w)
  if cin > _SMALL:
    return _lax_conv(x, w, strides, pads)
  xp = _pad(x, pads)
  out = tuple((n - k) // s + 1 for n, k, s in zip(xp.shape[1:-1], ks, strides))
  taps = [jnp.einsum("...i,io->...o", _window(xp, o, out, strides), w[o], precision=_HI)
          for o in _offsets(ks)]
  return sum(taps[1:], taps[0])


# Winograd F(2x2, 3x3) (Lavin & Gray 2016): each 2x2 output tile is A^T [(G w G^T) * (B^T d B)] A
# for its 4x4 input tile d, 16 products where the direct conv needs 36. On XLA:CPU the 16 batched
# matmuls and the transforms run a 14x14, 256->512 conv 1.45x faster than Eigen, its transposed
# conv 1.76x (100 images); results agree to ~1e-6 relative.
_WINO_BT = np.array([[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]], np.float32)
_WINO_G = np.array([[1, 0, 0], [.5, .5, .5], [.5, -.5, .5], [0, 0, 1]], np.float32)
_WINO_AT = np.array([[1, 1, 1, 0], [0, 1, -1, -1]], np.float32)


def _combine(coefs, terms):
  """sum_i coefs[i] * terms[i], skipping zero coefficients and multiplying by none of +-1."""
  out = None
  for c, t in zip(coefs, terms):
    if c:
      t = t if c == 1 else -t if c == -1 else t * c
      out = t if out is None else out + t
  return out


def _winograd_fits(w_shape, strides) -> bool:
  return tuple(w_shape[:-2]) == (3, 3) and tuple(strides) == (1, 1) and min(w_shape[-2:]) > _SMALL


def _winograd_tiles(x):
  """B^T d B for every 4x4 input tile d (stride 2) of x [B, H, W, C]: [16, B, th, tw, C]."""
  h, wd = x.shape[1:3]
  th, tw = (h - 1) // 2, (wd - 1) // 2  # 2x2 output tiles, the last ones cropped if odd
  x = _pad(x, [(0, 2 * th + 2 - h), (0, 2 * tw + 2 - wd)])
  d = [[x[:, i:i + 2 * th:2, j:j + 2 * tw:2] for j in range(4)] for i in range(4)]
  rows = [[_combine(_WINO_BT[a], [d[i][j] for i in range(4)]) for j in range(4)] for a in range(4)]
  return jnp.stack([_combine(_WINO_BT[c], rows[a]) for a in range(4) for c in range(4)])


def _winograd_3x3(x, w):
  """The VALID 3x3 stride-1 conv of x [B, H, W, Cin] with w [3, 3, Cin, Cout]."""
  b, h, wd = x.shape[:3]
  v = _winograd_tiles(x)
  u = jnp.einsum("ai,ijco,bj->abco", _WINO_G, w, _WINO_G, precision=_HI)
  m = jnp.einsum("kbhwc,kco->kbhwo", v, u.reshape((16,) + w.shape[2:]), precision=_HI)
  cols = [[_combine(_WINO_AT[r], [m[4 * a + c] for a in range(4)]) for c in range(4)]
          for r in range(2)]
  y = jnp.stack([jnp.stack([_combine(_WINO_AT[s], cols[r]) for s in range(2)], axis=3)
                 for r in range(2)], axis=2)  # [B, th, r, tw, s, Cout]
  th, tw = v.shape[2:4]
  return y.reshape(b, 2 * th, 2 * tw, -1)[:, :h - 2, :wd - 2]


def _winograd_3x3_dw(x, g):
  """d _winograd_3x3(x, w) / dw for the cotangent g: 16 products over the tiles, 2.2x faster
  than the swapped conv for a 14x14, 256->512 layer (100 images)."""
  v = _winograd_tiles(x)
  th, tw = v.shape[2:4]
  g = _pad(g, [(0, 2 * th - g.shape[1]), (0, 2 * tw - g.shape[2])])
  gt = [[g[:, r::2, s::2] for s in range(2)] for r in range(2)]
  # dM[a, c] = sum_{r, s} AT[r, a] AT[s, c] g[r, s], the transpose of the output transform
  t = [[_combine(_WINO_AT[:, a], [gt[r][s] for r in range(2)]) for s in range(2)]
       for a in range(4)]
  dm = jnp.stack([_combine(_WINO_AT[:, c], t[a]) for a in range(4) for c in range(4)])
  du = jnp.einsum("kbhwc,kbhwo->kco", v, dm, precision=_HI)
  return jnp.einsum("ai,abco,bj->ijco", _WINO_G, du.reshape((4, 4) + du.shape[1:]), _WINO_G,
                    precision=_HI)


def _flip_io(w):
  """The kernel of the transposed operation: spatially flipped, I and O swapped."""
  return jnp.flip(w, tuple(range(w.ndim - 2))).swapaxes(-1, -2)


def _transposed_pads(ks, pads, in_sizes, out_sizes, strides):
  """Padding of the stride-1 conv of the `strides`-dilated cotangent that yields dx."""
  res = []
  for k, (lo, _), n, m, s in zip(ks, pads, in_sizes, out_sizes, strides):
    before = k - 1 - lo
    res.append((before, n + k - 1 - (m - 1) * s - 1 - before))
  return res


# ------------------------------------------------------------------------------------ conv
def _conv_dx(g, w, x_shape, strides, pads):
  """d conv / d x: the transposed conv, written as a canonical conv of the dilated cotangent."""
  ks, cout = w.shape[:-2], w.shape[-1]
  if cout > _SMALL:
    # Through _conv_t, whose own VJP is fast: a gradient penalty differentiates this again.
    pads_t = tuple(_transposed_pads(ks, pads, x_shape[1:-1], g.shape[1:-1], strides))
    return _conv_t(g, _flip_io(w), jnp.zeros(w.shape[-2:-1], g.dtype), strides, pads_t)
  # Few output channels (e.g. a generator's last layer): scatter one matmul per kernel tap.
  dx = None
  for o in _offsets(ks):
    t = jnp.einsum("...o,io->...i", g, w[o], precision=_HI)
    cfg = [(0, 0, 0)]
    for a, (lo, _), n, m, s in zip(o, pads, x_shape[1:-1], g.shape[1:-1], strides):
      cfg.append((a - lo, n - (a - lo) - (m - 1) * s - 1, s - 1))  # negative pads crop
    t = lax.pad(t, jnp.zeros((), t.dtype), cfg + [(0, 0, 0)])
    dx = t if dx is None else dx + t
  return dx


def _conv_dw(x, g, w_shape, strides, pads):
  """d conv / d w, contracting over batch and output positions."""
  ks, nsp = w_shape[:-2], len(w_shape) - 2
  out = g.shape[1:-1]
  if _winograd_fits(w_shape, strides):
    return _winograd_3x3_dw(_pad(x, pads), g)
  if w_shape[-1] <= _SMALL and all(s == 1 for s in strides):
    # Few output channels (a generator's last layer): shift the small cotangent once per tap
    # instead of the large input, dW[t] = sum_q x[q]^T g[q + lo - t]: one pass over x (the
    # swapped conv took 120 ms for a 2x2 128->1 layer on 28x28, 100 images).
    shifted = []
    for o in _offsets(ks):
      cfg = [(a - lo, n - m - (a - lo), 0) for a, (lo, _), n, m in zip(o, pads, x.shape[1:-1], out)]
      shifted.append(lax.pad(g, jnp.zeros((), g.dtype), [(0, 0, 0)] + cfg + [(0, 0, 0)]))
    dw = jnp.einsum("...i,...to->ito", x, jnp.stack(shifted, axis=-2), precision=_HI)
    return jnp.moveaxis(dw.reshape((x.shape[-1],) + ks + w_shape[-1:]), 0, nsp)
  if all(s == 1 for s in strides):
    # A canonical conv with batch and features swapped: x^T (Cin, H, W, B) as the input and
    # g^T (Ho, Wo, B, Cout) as the kernel give (Cin, kh, kw, Cout). Beats im2col up to 7x for
    # 5x5 kernels on 28x28 maps, where the im2col matrix is 250 MB.
    hi = [(m - 1) + k - n - lo for m, k, n, (lo, _) in zip(out, ks, x.shape[1:-1], pads)]
    lhs = jnp.moveaxis(x, (0, x.ndim - 1), (x.ndim - 1, 0))
    rhs = jnp.moveaxis(g, 0, nsp)
    dw = _lax_conv(lhs, rhs, (1,) * nsp, [(lo, h) for (lo, _), h in zip(pads, hi)])
    return jnp.moveaxis(dw, 0, nsp)
  # Strided: im2col. The patch matrix is only out/in = 1/stride^2 of the taps' inputs, and
  # avoids the window-dilated conv the swap above would need.
  xp = _pad(x, pads)
  cols = jnp.concatenate([_window(xp, o, out, strides) for o in _offsets(ks)], axis=-1)
  axes = tuple(range(nsp + 1))
  return lax.dot_general(cols, g, ((axes, axes), ((), ())), precision=_HI).reshape(w_shape)


@partial(jax.custom_vjp, nondiff_argnums=(3, 4))
def _conv(x, w, b, strides, pads):
  return _strided_conv(x, w, strides, pads) + b


def _conv_fwd(x, w, b, strides, pads):
  # symbolic_zeros: x.perturbed is False for an input layer, whose dx we then skip.
  return _conv(x.value, w.value, b.value, strides, pads), (x.value, w.value, x.perturbed)


def _conv_bwd(strides, pads, res, g):
  x, w, x_perturbed = res
  dx = _conv_dx(g, w, x.shape, strides, pads) if x_perturbed else jnp.zeros_like(x)
  return dx, _conv_dw(x, g, w.shape, strides, pads), g.sum(tuple(range(x.ndim - 1)))


_conv.defvjp(_conv_fwd, _conv_bwd, symbolic_zeros=True)


def conv(x, w, b, strides, padding):
  """flax nnx.Conv: y = conv(x, w) + b, padding 'SAME' (TF-style), 'VALID' or explicit
  [(lo, hi), ...] per spatial axis; b may be None."""
  nsp = x.ndim - 2
  strides = _tuple(strides, nsp)
  pads = (tuple(lax.padtype_to_pads(x.shape[1:-1], w.shape[:-2], strides, padding))
          if isinstance(padding, str) else tuple(tuple(p) for p in padding))
  if not _fast_path():
    y = _lax_conv(x, w, strides, pads)
    return y if b is None else y + b
  b = jnp.zeros(w.shape[-1:], w.dtype) if b is None else b
  return _conv(x, w, b, strides, pads)


# ------------------------------------------------------------- nearest up-sampling + conv
def _phase_taps(k: int, factor: int):
  """For 'SAME' conv (kernel k) of an input up-sampled by `factor`: M[r, d, t] = 1 when output
  phase r's tap t reads input offset d_min + d; and (d_min, d_max)."""
  lo = (k - 1) // 2
  offsets = [[(r + t - lo) // factor for t in range(k)] for r in range(factor)]
  d_min, d_max = min(map(min, offsets)), max(map(max, offsets))
  m = np.zeros((factor, d_max - d_min + 1, k), np.float32)
  for r, row in enumerate(offsets):
    for t, d in enumerate(row):
      m[r, d - d_min, t] = 1.0
  return m, d_min, d_max


def upsample_conv(x, w, b, factor: int):
  """conv(nearest_upsample(x, factor), w, 'SAME') + b without building the up-sampled input.

  Each output phase r (position mod factor) reads a few input pixels, so the whole layer is one
  conv on the small input with a summed kernel per phase, then depth-to-space. The same function
  for every kernel, factor^2 x fewer positions: 5x5 after a 2x up-sampling is 36% of the FLOPs.
  """
  nsp = x.ndim - 2
  ks, cin, cout = w.shape[:-2], w.shape[-2], w.shape[-1]
  taps = [_phase_taps(k, factor) for k in ks]
  # w_phase[d_1..d_n, i, r_1..r_n, o] = sum over taps t with (r, t) -> d of w[t_1..t_n, i, o].
  w_phase = w
  for axis, (m, _, _) in enumerate(taps):
    w_phase = jnp.moveaxis(jnp.tensordot(jnp.asarray(m, w.dtype), w_phase, axes=([2], [axis])), (0, 1),
                           (-2, axis))  # new phase axis just before 'o'; tap axis -> offsets
  w_phase = w_phase.reshape(w_phase.shape[:nsp] + (cin, factor ** nsp * cout))
  pads = [(-d_min, d_max) for _, d_min, d_max in taps]
  bias = None if b is None else jnp.tile(b, factor ** nsp)
  y = conv(x, w_phase, bias, 1, pads)                                  # [B, *S, f..f, Cout]
  spatial = x.shape[1:-1]
  y = y.reshape((x.shape[0],) + spatial + (factor,) * nsp + (cout,))
  order = [0] + [a for i in range(nsp) for a in (1 + i, 1 + nsp + i)] + [1 + 2 * nsp]
  return y.transpose(order).reshape((x.shape[0],) + tuple(n * factor for n in spatial) + (cout,))


# ------------------------------------------------------------------------ conv_transpose
def _transpose_pads(k, s, padding):
  """lax.conv_transpose's padding of the dilated input (its `_conv_transpose_padding`)."""
  if padding == "SAME":
    total = k + s - 2
    lo = k - 1 if s > k - 1 else -(-total // 2)
  else:  # VALID
    total, lo = k + s - 2 + max(k - s, 0), k - 1
  return lo, total - lo


@partial(jax.custom_vjp, nondiff_argnums=(3, 4))
def _conv_t(x, w, b, strides, pads):
  if all(s == 1 for s in strides):  # a plain conv (e.g. the input gradient of a stride-1 conv)
    return _strided_conv(x, w, strides, pads) + b
  return _lax_conv(x, w, (1,) * len(strides), pads, lhs_dilation=strides) + b


def _conv_t_fwd(x, w, b, strides, pads):
  return _conv_t(x.value, w.value, b.value, strides, pads), (x.value, w.value, x.perturbed)


def _conv_t_bwd(strides, pads, res, g):
  # y[o] = sum_k x[i] w[k] over o = s*i + k - lo, hence (per spatial axis)
  #   dx[i] = sum_k g[s*i + lo - k] w[k]^T   a strided conv of g with the flipped kernel,
  #   dW[k] = sum_i x[i]^T g[s*i + lo - k]   an im2col dot over taps of the padded g.
  x, w, x_perturbed = res
  ks, nsp = w.shape[:-2], w.ndim - 2
  ins, outs = x.shape[1:-1], g.shape[1:-1]
  gpads = [(k - 1 - lo, (n - 1) * s + 1 - m + lo) for k, (lo, _), n, m, s
           in zip(ks, pads, ins, outs, strides)]
  gp = _pad(g, gpads)
  dx = _strided_conv(gp, _flip_io(w), strides, [(0, 0)] * nsp) if x_perturbed else jnp.zeros_like(x)
  cols = jnp.concatenate([_window(gp, tuple(k - 1 - a for k, a in zip(ks, o)), ins, strides)
                          for o in _offsets(ks)], axis=-1)
  axes = tuple(range(nsp + 1))
  dw = lax.dot_general(x, cols, ((axes, axes), ((), ())), precision=_HI)  # (Cin, taps*Cout)
  dw = jnp.moveaxis(dw.reshape((w.shape[-2],) + ks + (w.shape[-1],)), 0, nsp)
  return dx, dw, g.sum(tuple(range(nsp + 1)))


_conv_t.defvjp(_conv_t_fwd, _conv_t_bwd, symbolic_zeros=True)


def conv_transpose(x, w, b, strides, padding):
  """flax nnx.ConvTranspose (transpose_kernel=False): the conv of the `strides`-dilated x."""
  nsp = x.ndim - 2
  strides = _tuple(strides, nsp)
  pads = tuple(_transpose_pads(k, s, padding) for k, s in zip(w.shape[:-2], strides))
  if not _fast_path():
    y = _lax_conv(x, w, (1,) * nsp, pads, lhs_dilation=strides)
    return y if b is None else y + b
  b = jnp.zeros(w.shape[-1:], w.dtype) if b is None else b
  return _conv_t(x, w, b, strides, pads)


# ------------------------------------------------------------------------------- pooling
def max_pool(x, window):
  """Non-overlapping max pool over every spatial axis (stride = window), flooring odd sizes.
  Reshape-and-max: XLA:CPU differentiates it several times faster than lax.reduce_window."""
  window = _tuple(window, x.ndim - 2)
  pooled = tuple(n // k for n, k in zip(x.shape[1:-1], window))
  x = x[(slice(None),) + tuple(slice(0, p * k) for p, k in zip(pooled, window))]
  shape = (x.shape[0],) + tuple(d for p, k in zip(pooled, window) for d in (p, k)) + x.shape[-1:]
  return x.reshape(shape).max(axis=tuple(range(2, 2 * len(window) + 1, 2)))


# --------------------------------------------------------------- fused input conv + pool
def _fusion_fence(pred_src, tree):
  """Returns `tree` materialized. XLA:CPU strips lax.optimization_barrier and would re-fuse
  (recompute) the whole forward conv into each backward consumer of its outputs; a conditional
  is a hard fusion boundary. The other branch runs only if pred_src[0] is not finite."""
  pred = jnp.isfinite(pred_src.reshape(-1)[0])
  return lax.cond(pred, lambda t: t,
                  lambda t: jax.tree.map(lambda a: jnp.full_like(a, jnp.nan)
                                         if jnp.issubdtype(a.dtype, jnp.floating)
                                         else jnp.zeros_like(a), t), tree)


def _crp_forward(x, w, b, window):
  """(z, idx): the window max of conv_valid(x, w) + b before relu, and its flat offset in the
  window (the first max, as Keras/TF). The conv is a sum of broadcast multiply-adds, one per
  (tap, input channel): with few input channels XLA fuses it with the bias and the pooling into
  a single loop, never writing the full-resolution conv output."""
  ks, cin = w.shape[:-2], w.shape[-2]
  out = tuple(n - k + 1 for n, k in zip(x.shape[1:-1], ks))
  y = b
  for o in _offsets(ks):
    xs = _window(x, o, out, (1,) * len(ks))
    for c in range(cin):
      y = y + xs[..., c:c + 1] * w[o + (c,)]
  pooled = tuple(n // p for n, p in zip(out, window))
  z = idx = None
  for n, o in enumerate(_offsets(window)):
    v = _window(y, o, pooled, window)
    if z is None:
      z, idx = v, jnp.zeros(v.shape, jnp.uint8)
    else:
      better = v > z  # strict: ties keep the first max
      z, idx = jnp.where(better, v, z), jnp.where(better, jnp.uint8(n), idx)
  return z, idx


@partial(jax.custom_vjp, nondiff_argnums=(3,))
def _crp(x, w, b, window):
  return jax.nn.relu(_crp_forward(x, w, b, window)[0])


def _crp_fwd(x, w, b, window):
  z, idx = _fusion_fence(b, _crp_forward(x, w, b, window))
  return jax.nn.relu(z), (x, w, z, idx)


def _crp_bwd(window, res, g):
  x, w, z, idx = res
  ks, (cin, cout) = w.shape[:-2], w.shape[-2:]
  nsp, pooled = len(ks), z.shape[1:-1]
  axes = tuple(range(nsp + 1))
  gz = jnp.where(z > 0, g, 0.0)  # relu'(0) = 0, as jax.nn.relu
  # dW in the pooled domain: only the argmax position u of each window gets gradient, so
  #   dW[k] = sum_{u in window} X[u + k]^T (gz * [idx == u]).
  # One dot of all (u + k) input taps against all window-position-masked cotangents, then
  # the (u, k) blocks are summed: the full-resolution cotangent is never built.
  span = tuple(p + k - 1 for p, k in zip(window, ks))
  xcat = jnp.concatenate([_window(x, a, pooled, window) for a in _offsets(span)], axis=-1)
  woffs = _offsets(window)
  # [..., n * cout + c] = gz[..., c] where idx == n: one broadcast select (jax 0.12's XLA:CPU
  # would not fuse a concatenate of one select per n, and ran them 4x slower).
  n = jnp.arange(len(woffs), dtype=idx.dtype)[:, None]
  gcat = jnp.where(idx[..., None, :] == n, gz[..., None, :], 0.0).reshape(
      idx.shape[:-1] + (len(woffs) * cout,))
  m = lax.dot_general(xcat, gcat, ((axes, axes), ((), ())), precision=_HI)
  m = m.reshape(span + (cin,) + tuple(window) + (cout,))
  dw = sum(m[tuple(slice(u, u + k) for u, k in zip(wo, ks)) + (slice(None),) + wo + (slice(None),)]
           for wo in woffs)
  return jnp.zeros_like(x), dw, jnp.sum(gz, axis=axes)  # an input layer: no dx


_crp.defvjp(_crp_fwd, _crp_bwd)


def conv_relu_maxpool(x, w, b, window):
  """max_pool(relu(conv(x, w, b, 1, 'VALID')), window) fused, for a network's INPUT layer with
  few input channels: x gets a zero gradient. ~4x faster CNN training step on XLA:CPU."""
  window = _tuple(window, x.ndim - 2)
  if not _fast_path():
    return max_pool(jax.nn.relu(conv(x, w, b, 1, "VALID")), window)
  return _crp(x, w, b, window)
