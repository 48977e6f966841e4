"""The SNGAN / WGAN-GP ResNet generator and discriminator (Miyato et al. 2018, Gulrajani et al.
2017) for 32x32 and 28x28 images (any square side s * 2^n, n >= 2, s <= 8).

G: z -> Dense s x s x g_width -> n up-sampling residual blocks (BN, ReLU, 2x nearest up-sampling,
conv 3x3, BN, ReLU, conv 3x3; shortcut: up-sampling, conv 1x1) -> BN, ReLU, conv 3x3, tanh. A
conditional generator's block norms are conditional batch norm: a class's own gain and bias, or
(model.g_shared_embedding > 0) linear maps of one class embedding shared by all blocks (BigGAN).
D: an 'optimized' first block (conv, ReLU, conv, 2x2 average pool; shortcut pool then conv 1x1),
n - 1 down-sampling blocks, 2 blocks at the last size (ReLU, conv 3x3, ReLU, conv 3x3), then ReLU
and a global sum pool: features [B, d_width] for the Discriminator's heads (and projection).
Widths are constant: g_width (SNGAN's CIFAR-10: 256) and d_width (128).
"""

import jax
import jax.numpy as jnp
from flax import nnx

from common.nn.layers import Conv, Dense, Layer, UpSample, dropout


def avg_pool(x: jax.Array) -> jax.Array:
  b, h, w, c = x.shape
  return x.reshape(b, h // 2, 2, w // 2, 2, c).mean(axis=(2, 4))


def _conv(cin: int, cout: int, k: int, init, dtype, rngs) -> Conv:
  return Conv(cin, cout, (k, k), padding="SAME", dtype=dtype, kernel_init=init, rngs=rngs)


class ConditionalBatchNorm(nnx.Module):
  """Batch norm whose gain and bias depend on the class (de Vries et al. 2017): with embed_dim 0,
  the class's own row of a gain and a bias table (SNGAN's conditional G); with embed_dim > 0,
  1 + W_g e and W_b e of the class's shared embedding e (BigGAN). num_classes 0: plain BN."""

  def __init__(self, features: int, num_classes: int, embed_dim: int, init, *, dtype=None,
               rngs: nnx.Rngs):
    conditional = num_classes > 0
    self.norm = nnx.BatchNorm(features, momentum=0.9, epsilon=1e-5, use_scale=not conditional,
                              use_bias=not conditional, dtype=dtype, rngs=rngs)
    self.embedded = conditional and embed_dim > 0
    if self.embedded:  # Dense, so spectral norm in G wraps them, as BigGAN's SNLinear
      linear = lambda: Dense(embed_dim, features, use_bias=False, dtype=dtype, kernel_init=init,
                             rngs=rngs)
      self.gain, self.bias = linear(), linear()
    else:  # bare nnx.Embed: spectral norm leaves the class tables alone
      table = lambda fill: nnx.Embed(num_classes, features, embedding_init=fill, rngs=rngs)
      self.gain = nnx.data(table(nnx.initializers.ones) if conditional else None)
      self.bias = nnx.data(table(nnx.initializers.zeros) if conditional else None)

  def __call__(self, x, cond, *, train: bool):
    """cond: the labels [B] (tables) or the shared embeddings [B, embed_dim]."""
    x = self.norm(x, use_running_average=not train)
    if self.gain is None:
      return x
    if self.embedded:
      gain, bias = 1 + self.gain(cond, train=train), self.bias(cond, train=train)
    else:
      gain, bias = self.gain(cond), self.bias(cond)
    return x * gain[:, None, None, :].astype(x.dtype) + bias[:, None, None, :].astype(x.dtype)


class GBlock(nnx.Module):

  def __init__(self, cin: int, cout: int, num_classes: int, embed_dim: int, init, *, dtype,
               rngs: nnx.Rngs):
    conv = lambda i, o, k: _conv(i, o, k, init, dtype, rngs)
    norm = lambda c: ConditionalBatchNorm(c, num_classes, embed_dim, init, dtype=dtype, rngs=rngs)
    self.bn1 = norm(cin)
    self.conv1 = conv(cin, cout, 3)
    self.bn2 = norm(cout)
    self.conv2 = conv(cout, cout, 3)
    self.shortcut = conv(cin, cout, 1)
    self.up = UpSample(2)

  def __call__(self, x, cond, *, train: bool):
    h = self.up(jax.nn.relu(self.bn1(x, cond, train=train)))
    h = self.conv1(h, train=train)
    h = self.conv2(jax.nn.relu(self.bn2(h, cond, train=train)), train=train)
    return h + self.up(self.shortcut(x, train=train))  # a 1x1 conv commutes with up-sampling


class ResNetGenerator(nnx.Module):
  takes_labels = True  # gan.models.Generator passes the labels on (conditional batch norm)

  def __init__(self, zin: int, shape, stages: int, width: int, num_classes: int, embed_dim: int,
               init, *, dtype, rngs: nnx.Rngs):
    self.base = shape[0] // 2 ** stages
    self.width = width
    self.dense = Dense(zin, self.base * self.base * width, dtype=dtype, kernel_init=init, rngs=rngs)
    # BigGAN's shared class embedding, N(0, 1) as torch's nn.Embedding; a bare nnx.Embed, so
    # spectral norm leaves it alone, as BigGAN does.
    self.shared = nnx.data(nnx.Embed(num_classes, embed_dim,
                                     embedding_init=nnx.initializers.normal(1.0), rngs=rngs)
                           if num_classes and embed_dim else None)
    self.blocks = nnx.List([GBlock(width, width, num_classes, embed_dim, init, dtype=dtype,
                                   rngs=rngs) for _ in range(stages)])
    self.bn = ConditionalBatchNorm(width, 0, 0, init, dtype=dtype, rngs=rngs)
    self.out = Conv(width, shape[2], (3, 3), padding="SAME", activation="tanh", dtype=dtype,
                    kernel_init=init, rngs=rngs)

  def __call__(self, z, *, labels=None, train: bool = False, key=None):
    x = self.dense(z, train=train).reshape(z.shape[0], self.base, self.base, self.width)
    cond = labels if self.shared is None else self.shared(labels)
    for block in self.blocks:
      x = block(x, cond, train=train)
    return self.out(jax.nn.relu(self.bn(x, None, train=train)), train=train)


class DBlock(nnx.Module):
  """A residual block of D: `first` is SNGAN's optimized block (no ReLU before its first conv)."""

  def __init__(self, cin: int, cout: int, down: bool, first: bool, norm, init, *, dtype,
               rngs: nnx.Rngs):
    conv = lambda i, o, k: _conv(i, o, k, init, dtype, rngs)
    self.down, self.first = down, first
    self.norm1 = nnx.List([] if first else norm(cin))
    self.conv1 = conv(cin, cout, 3)
    self.norm2 = nnx.List(norm(cout))
    self.conv2 = conv(cout, cout, 3)
    self.shortcut = conv(cin, cout, 1) if (down or cin != cout) else None

  def __call__(self, x, *, train: bool):
    h = x
    if not self.first:
      for n in self.norm1:
        h = n(h, train=train)
      h = jax.nn.relu(h)
    h = self.conv1(h, train=train)
    for n in self.norm2:
      h = n(h, train=train)
    h = self.conv2(jax.nn.relu(h), train=train)
    h = avg_pool(h) if self.down else h
    if self.shortcut is None:
      return h + x
    # Pool, then the 1x1 conv: SNGAN's optimized block does; its other blocks convolve first, but
    # a 1x1 conv commutes with average pooling, so this is their function at 4x fewer FLOPs.
    return h + self.shortcut(avg_pool(x) if self.down else x, train=train)


class ResNetDiscriminator(Layer):

  def __init__(self, cin: int, stages: int, width: int, rate: float, norm, init, *, dtype,
               rngs: nnx.Rngs):
    kinds = [(True, True)] + [(True, False)] * (stages - 1) + [(False, False)] * 2
    self.blocks = nnx.List([DBlock(cin if i == 0 else width, width, down, first, norm, init,
                                   dtype=dtype, rngs=rngs)
                            for i, (down, first) in enumerate(kinds)])
    self.rate = rate

  def __call__(self, x, *, train: bool = False, key=None):
    for i, block in enumerate(self.blocks):
      x = block(x, train=train)
      if self.rate > 0 and train:
        x = dropout(x, self.rate, jax.random.fold_in(key, i))
    return jnp.sum(jax.nn.relu(x), axis=(1, 2))  # global sum pooling


def stages_fit(shape, stages: int) -> bool:
  """Whether ResNet has a layout: square, side s * 2^stages with stages >= 2 and s <= 8."""
  return (len(shape) == 3 and shape[0] == shape[1] and stages >= 2
          and shape[0] // 2 ** stages <= 8)


def bodies(m, shape, k, zin, dtype, rngs, stages: int, init, norm):
  """(G, D body, D's feature count) for config.model m; `norm(c)` lists D's norm layers."""
  conditional_g = m.conditioning != "none"
  g = ResNetGenerator(zin, shape, stages, m.g_width, k if conditional_g else 0,
                      m.g_shared_embedding, init, dtype=dtype, rngs=rngs)
  cin = shape[2] + (k if m.d_conditional else 0)
  d = ResNetDiscriminator(cin, stages, m.d_width, m.d_dropout, norm, init, dtype=dtype, rngs=rngs)
  return g, d, m.d_width
