"""pytorch-fid's FID Inception-v3 in JAX: 2048-d pool3 features and 1008-way logits.

The network is the one pytorch-fid builds (`fid_inception_v3`): torchvision's Inception-v3 with
the TensorFlow graph's blocks (FIDInceptionA/C/E_1/E_2: average pools that exclude padding, a max
pool in the last block), batch norm with eps 1e-3 and convolutions without bias. Parameters are a
flat dict keyed by the PyTorch module names (`Mixed_5b.branch1x1` -> (kernel HWIO, bias)), batch
norm folded into each convolution (gan/inception_weights.py reads and folds them), so the forward
is a pure function, jitted once per batch shape, every convolution at HIGHEST precision (on
CPU, 3x3 stride-1 ones by Winograd's F(2x2, 3x3) from common/nn/kernels.py: ~3e-7 relative).

Images reach 299x299 by a named convention (RESIZES), recorded with every result:
  pytorch_fid  bilinear as F.interpolate(align_corners=False, no antialias), as pytorch-fid
  clean        bicubic (a = -0.5) with antialiasing on float pixels, no quantization, clipped to
               [0, 255], as clean-fid's PIL resize; jax.image.resize computes PIL's kernel weights,
               in float32 (PIL: float64 weights, float32 store)
Grayscale is repeated to three channels; pixels x in [0, 1] enter as 2x - 1 (pytorch-fid).
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from common import parallel
from common.nn import kernels
from gan import inception_options

SIZE = 299  # the network's input side
RESIZES = inception_options.RESIZES  # how images reach 299x299
FEATURES, LOGITS = 2048, 1008
BN_EPS = 1e-3
HIGHEST = lax.Precision.HIGHEST


# --- resizing -----------------------------------------------------------------------------------

def resize(images: jax.Array, convention: str, size: int = SIZE) -> jax.Array:
  """uint8 or [0, 255] float images [N, H, W, C] -> float32 [N, size, size, 3] in [0, 1]."""
  if convention not in RESIZES:
    raise ValueError(f"Unknown resize convention {convention!r}; use one of {RESIZES}.")
  x = jnp.asarray(images).astype(jnp.float32)
  if x.shape[-1] == 1:
    x = jnp.repeat(x, 3, axis=-1)
  shape = (x.shape[0], size, size, x.shape[-1])
  if convention == "pytorch_fid":  # pytorch-fid resizes the [0, 1] tensor
    return jax.image.resize(x / 255.0, shape, "linear", antialias=False)
  return jnp.clip(jax.image.resize(x, shape, "cubic", antialias=True), 0.0, 255.0) / 255.0


# --- the network --------------------------------------------------------------------------------

def _conv(p: dict, name: str, x, stride: int = 1, pad=(0, 0)):
  """BasicConv2d: convolution, batch norm (folded into kernel and bias), ReLU."""
  kernel, bias = p[name]  # kernels.conv: lax's conv, but Winograd for 3x3 stride 1 on CPU
  return jax.nn.relu(kernels.conv(x, kernel, bias, (stride, stride),
                                  ((pad[0], pad[0]), (pad[1], pad[1]))))


def _max_pool(x, stride: int = 2, pad: int = 0):
  return lax.reduce_window(x, -jnp.inf, lax.max, (1, 3, 3, 1), (1, stride, stride, 1),
                           ((0, 0), (pad, pad), (pad, pad), (0, 0)))


def _avg_pool(x):
  """3x3, stride 1, padding 1, count_include_pad=False: the mean of the window's real pixels."""
  window, pads = (1, 3, 3, 1), ((0, 0), (1, 1), (1, 1), (0, 0))
  total = lax.reduce_window(x, 0.0, lax.add, window, (1,) * 4, pads)
  count = lax.reduce_window(jnp.ones((1,) + x.shape[1:3] + (1,), x.dtype), 0.0, lax.add, window,
                            (1,) * 4, pads)
  return total / count


def _block_a(p, n, x):  # FIDInceptionA
  c = functools.partial(_conv, p)
  b5 = c(f"{n}.branch5x5_2", c(f"{n}.branch5x5_1", x), pad=(2, 2))
  b3 = c(f"{n}.branch3x3dbl_1", x)
  b3 = c(f"{n}.branch3x3dbl_3", c(f"{n}.branch3x3dbl_2", b3, pad=(1, 1)), pad=(1, 1))
  return jnp.concatenate([c(f"{n}.branch1x1", x), b5, b3,
                          c(f"{n}.branch_pool", _avg_pool(x))], -1)


def _block_b(p, n, x):  # InceptionB (Mixed_6a)
  c = functools.partial(_conv, p)
  b3 = c(f"{n}.branch3x3", x, stride=2)
  dbl = c(f"{n}.branch3x3dbl_2", c(f"{n}.branch3x3dbl_1", x), pad=(1, 1))
  return jnp.concatenate([b3, c(f"{n}.branch3x3dbl_3", dbl, stride=2), _max_pool(x)], -1)


def _block_c(p, n, x):  # FIDInceptionC
  c = functools.partial(_conv, p)
  row, col = (0, 3), (3, 0)  # padding of the 1x7 and 7x1 convolutions
  b7 = c(f"{n}.branch7x7_3", c(f"{n}.branch7x7_2", c(f"{n}.branch7x7_1", x), pad=row), pad=col)
  d = c(f"{n}.branch7x7dbl_1", x)
  for i, pad in zip(range(2, 6), (col, row, col, row)):
    d = c(f"{n}.branch7x7dbl_{i}", d, pad=pad)
  return jnp.concatenate([c(f"{n}.branch1x1", x), b7, d,
                          c(f"{n}.branch_pool", _avg_pool(x))], -1)


def _block_d(p, n, x):  # InceptionD (Mixed_7a)
  c = functools.partial(_conv, p)
  b3 = c(f"{n}.branch3x3_2", c(f"{n}.branch3x3_1", x), stride=2)
  b7 = c(f"{n}.branch7x7x3_3", c(f"{n}.branch7x7x3_2", c(f"{n}.branch7x7x3_1", x),
                                   pad=(0, 3)), pad=(3, 0))
  return jnp.concatenate([b3, c(f"{n}.branch7x7x3_4", b7, stride=2), _max_pool(x)], -1)


def _block_e(p, n, x, max_pool: bool):  # FIDInceptionE_1 (average pool), E_2 (max pool)
  c = functools.partial(_conv, p)

  def split(y, name):  # the 1x3 and 3x1 pair on one input
    return [c(f"{n}.{name}a", y, pad=(0, 1)), c(f"{n}.{name}b", y, pad=(1, 0))]

  b3 = split(c(f"{n}.branch3x3_1", x), "branch3x3_2")
  dbl = split(c(f"{n}.branch3x3dbl_2", c(f"{n}.branch3x3dbl_1", x), pad=(1, 1)), "branch3x3dbl_3")
  pool = _max_pool(x, stride=1, pad=1) if max_pool else _avg_pool(x)
  return jnp.concatenate([c(f"{n}.branch1x1", x), *b3, *dbl, c(f"{n}.branch_pool", pool)], -1)


def forward(params: dict, x: jax.Array) -> dict:
  """[N, 299, 299, 3] in [0, 1] -> {'pool3': [N, 2048], 'logits': [N, 1008] (fc with bias),
  'logits_unbiased': [N, 1008] (fc without bias: the original Inception score's)}."""
  x = 2.0 * x - 1.0
  x = _conv(params, "Conv2d_1a_3x3", x, stride=2)
  x = _conv(params, "Conv2d_2b_3x3", _conv(params, "Conv2d_2a_3x3", x), pad=(1, 1))
  x = _max_pool(x)
  x = _max_pool(_conv(params, "Conv2d_4a_3x3", _conv(params, "Conv2d_3b_1x1", x)))
  for n in ("Mixed_5b", "Mixed_5c", "Mixed_5d"):
    x = _block_a(params, n, x)
  x = _block_b(params, "Mixed_6a", x)
  for n in ("Mixed_6b", "Mixed_6c", "Mixed_6d", "Mixed_6e"):
    x = _block_c(params, n, x)
  x = _block_d(params, "Mixed_7a", x)
  x = _block_e(params, "Mixed_7c", _block_e(params, "Mixed_7b", x, False), True)
  pool3 = x.mean((1, 2))
  weight, bias = params["fc"]
  unbiased = jnp.matmul(pool3, weight, precision=HIGHEST)
  return {"pool3": pool3, "logits": unbiased + bias, "logits_unbiased": unbiased}


# XLA:CPU runs this network 1.4x faster per image on 10 images at a time than on 100 (the
# activations stay in cache; measured on the 2-core AMD EPYC VM, 2026-12-06): on CPU a batch runs
# as a loop over slices of CPU_SLICE images, inside the same compiled call.
CPU_SLICE = 10


@functools.partial(jax.jit, static_argnums=2)  # one compilation per shape and convention
def _extract(params: dict, images: jax.Array, convention: str) -> dict:
  x = resize(images, convention)
  n = x.shape[0]
  if jax.default_backend() != "cpu" or n <= CPU_SLICE or n % CPU_SLICE:
    return forward(params, x)
  out = lax.map(lambda part: forward(params, part), x.reshape((-1, CPU_SLICE) + x.shape[1:]))
  return {k: v.reshape((n,) + v.shape[2:]) for k, v in out.items()}


class Extractor:
  """uint8 images [N, H, W, C] -> numpy {'pool3', 'logits', 'logits_unbiased'}, `batch` images a
  time, each batch sharded over the mesh's devices, the parameters replicated; the last batch is
  padded, so one compilation serves every call."""

  def __init__(self, params: dict, mesh, resize_convention: str = "pytorch_fid",
               batch: int = 100):
    if resize_convention not in RESIZES:
      raise ValueError(f"Unknown resize convention {resize_convention!r}; use one of {RESIZES}.")
    parallel.check_batch(batch, mesh, "inception_batch_size")
    self.mesh, self.batch, self.resize = mesh, batch, resize_convention
    self.params = parallel.replicate(mesh, params)

  def __call__(self, images: np.ndarray) -> dict:
    out = {}
    for i in range(0, len(images), self.batch):
      chunk = np.asarray(images[i:i + self.batch])
      padded = np.concatenate([chunk, np.zeros((self.batch - len(chunk),) + chunk.shape[1:],
                                               chunk.dtype)]) if len(chunk) < self.batch else chunk
      result = _extract(self.params, jax.device_put(padded, parallel.sharded(self.mesh)),
                        self.resize)
      for k, v in jax.device_get(result).items():
        out.setdefault(k, []).append(np.asarray(v[:len(chunk)], np.float32))
    if not out:
      raise ValueError("No images to extract Inception features from.")
    return {k: np.concatenate(v) for k, v in out.items()}
