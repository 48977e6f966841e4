"""Generators and discriminators (critics): MLP, DCGAN and the Keras MNIST ACGAN, conditional or not.

A `Generator` maps z [B, Z] and labels [B] to images [B, H, W, C] in [-1, 1]; a `Discriminator`
maps images (and labels) to {'logit': [B], 'class_logits': [B, K] or None}. The families differ only
in their `Sequential` bodies, built by the functions below from `config.model` and the dataset's
image shape and class count; `build` refuses a shape an architecture has no layout for, before
anything is compiled.
"""

import jax
import jax.numpy as jnp
import ml_collections
from flax import nnx

from common.config import ConfigError
from common.nn.layers import (Activation, BatchNorm, Conv, ConvTranspose, Dense, Dropout, Embed,
                           Flatten, LayerNorm, Reshape, Sequential, UpSample)
from gan import losses
from gan import resnet
from gan import spectral

# A conditional discriminator concatenates one-hot channels (conv) or a one-hot vector (MLP) to its
# input; gan.options.CONDITIONING says how the generator sees the label.


def _init(name: str):
  """DCGAN's N(0, 0.02), He's ReLU-preserving normal, or Keras's glorot-uniform kernels."""
  return {"dcgan": nnx.initializers.normal(0.02), "he": nnx.initializers.he_normal()}.get(
      name, nnx.initializers.glorot_uniform())


def _norm(kind: str, features: int, input_ndim: int, dtype, rngs) -> list:
  if kind == "batch":
    return [BatchNorm(features, dtype=dtype, rngs=rngs)]
  if kind == "layer":
    return [LayerNorm(features, input_ndim, dtype=dtype, rngs=rngs)]
  return []


class Generator(nnx.Module):

  def __init__(self, body: Sequential, latent_dim: int, num_classes: int, conditioning: str, *,
               rngs: nnx.Rngs):
    self.body = body
    self.num_classes = num_classes
    self.conditioning = conditioning
    self.embed = (nnx.Embed(num_classes, latent_dim, embedding_init=nnx.initializers.glorot_normal(),
                            rngs=rngs) if conditioning == "multiply" else None)

  def __call__(self, z, labels, *, train: bool = False, key=None):
    if self.conditioning == "concat":
      z = jnp.concatenate([z, jax.nn.one_hot(labels, self.num_classes, dtype=z.dtype)], -1)
    elif self.conditioning == "multiply":
      z = z * self.embed(labels).astype(z.dtype)
    if getattr(self.body, "takes_labels", False):  # the ResNet's conditional batch norm
      return self.body(z, labels=labels, train=train, key=key)
    return self.body(z, train=train, key=key)


class Discriminator(nnx.Module):

  def __init__(self, body: Sequential, features: int, num_classes: int, conditional: bool,
               aux_classifier: bool, flat_input: bool, *, projection: bool = False, dtype=None,
               rngs: nnx.Rngs):
    self.body = body
    self.num_classes = num_classes
    self.conditional = conditional
    self.flat_input = flat_input
    self.head = Dense(features, 1, dtype=dtype, rngs=rngs)
    self.aux = Dense(features, num_classes, dtype=dtype, rngs=rngs) if aux_classifier else None
    # Miyato and Koyama's class embedding V: logit = psi(phi(x)) + <V y, phi(x)>.
    self.projection = Embed(num_classes, features, rngs=rngs) if projection else None

  def __call__(self, images, labels, *, train: bool = False, key=None):
    x = images.reshape(images.shape[0], -1) if self.flat_input else images
    if self.conditional:
      onehot = jax.nn.one_hot(labels, self.num_classes, dtype=x.dtype)
      if not self.flat_input:  # one constant channel per class
        onehot = jnp.broadcast_to(onehot[:, None, None, :], x.shape[:-1] + (self.num_classes,))
      x = jnp.concatenate([x, onehot], -1)
    features = self.body(x, train=train, key=key)
    logit = self.head(features, train=train)[:, 0].astype(jnp.float32)
    if self.projection is not None:
      embedding = self.projection(labels, train=train)
      logit = logit + losses.projection(features, embedding).astype(jnp.float32)
    return {"logit": logit,
            "class_logits": (None if self.aux is None
                             else self.aux(features, train=train).astype(jnp.float32))}


def _mlp(m, shape, k, zin, dtype, rngs):
  size = shape[0] * shape[1] * shape[2]
  w, dw, leaky = m.g_width, m.d_width, "leaky_relu"
  g = Sequential(Dense(zin, w, leaky, dtype=dtype, rngs=rngs),
                 Dense(w, 2 * w, leaky, dtype=dtype, rngs=rngs),
                 Dense(2 * w, 4 * w, leaky, dtype=dtype, rngs=rngs),
                 Dense(4 * w, size, "tanh", dtype=dtype, rngs=rngs), Reshape(shape))
  din = size + (k if m.d_conditional else 0)
  d = Sequential(Dense(din, 2 * dw, leaky, dtype=dtype, rngs=rngs),
                 Dropout(m.d_dropout), Dense(2 * dw, dw, leaky, dtype=dtype, rngs=rngs),
                 Dropout(m.d_dropout))
  return g, d, dw


def _dcgan(m, shape, k, zin, dtype, rngs):
  """Radford et al.: strided transposed convs with batch norm in G; strided convs in D."""
  ups = dcgan_stages(shape)
  base = shape[0] // 2 ** ups
  init = _init(m.init)
  widths = [m.g_width * 2 ** i for i in reversed(range(ups))]  # e.g. (128, 64) for 28x28
  g_layers = [Dense(zin, base * base * widths[0], dtype=dtype, kernel_init=init, rngs=rngs),
              Reshape((base, base, widths[0])), BatchNorm(widths[0], dtype=dtype, rngs=rngs),
              Activation("relu")]
  for cin, cout in zip(widths, widths[1:]):
    g_layers += [ConvTranspose(cin, cout, (4, 4), 2, dtype=dtype, kernel_init=init, rngs=rngs),
                 BatchNorm(cout, dtype=dtype, rngs=rngs), Activation("relu")]
  g_layers.append(ConvTranspose(widths[-1], shape[2], (4, 4), 2, activation="tanh", dtype=dtype,
                                kernel_init=init, rngs=rngs))
  cin = shape[2] + (k if m.d_conditional else 0)
  d_layers, size = [], shape[0]
  for i in range(ups):
    cout = m.d_width * 2 ** i
    d_layers.append(Conv(cin, cout, (4, 4), 2, "SAME", dtype=dtype, kernel_init=init, rngs=rngs))
    if i > 0:  # DCGAN: no normalization on the discriminator's input layer
      d_layers += _norm(m.d_norm, cout, 4, dtype, rngs)
    d_layers += [Activation("leaky_relu"), Dropout(m.d_dropout)]
    cin, size = cout, -(-size // 2)
  d_layers.append(Flatten())
  return Sequential(*g_layers), Sequential(*d_layers), size * size * cin


def _keras_acgan(m, shape, k, zin, dtype, rngs):
  """The Keras MNIST ACGAN (the course's model); widths scale with g_width and d_width."""
  base = shape[0] // 4
  w = m.g_width
  # Keras: glorot-uniform dense and glorot-normal conv kernels; init='he' keeps ReLU activations
  # from shrinking layer by layer (narrow CPU-preset generators otherwise start near-constant).
  dense_init = _init(m.init) if m.init == "he" else nnx.initializers.glorot_uniform()
  conv_init = _init(m.init) if m.init == "he" else nnx.initializers.glorot_normal()
  g = Sequential(
      Dense(zin, m.g_hidden, "relu", dtype=dtype, kernel_init=dense_init, rngs=rngs),
      Dense(m.g_hidden, w * base * base, "relu", dtype=dtype, kernel_init=dense_init, rngs=rngs),
      Reshape((base, base, w)), UpSample(2, fuse_conv=True),  # up-sampled inside the conv
      Conv(w, 2 * w, (5, 5), padding="SAME", activation="relu", dtype=dtype,
           kernel_init=conv_init, rngs=rngs),
      UpSample(2, fuse_conv=True),
      Conv(2 * w, w, (5, 5), padding="SAME", activation="relu", dtype=dtype,
           kernel_init=conv_init, rngs=rngs),
      Conv(w, shape[2], (2, 2), padding="SAME", activation="tanh", dtype=dtype,
           kernel_init=conv_init, rngs=rngs))
  cin = shape[2] + (k if m.d_conditional else 0)
  d_layers, size = [], shape[0]
  for i, stride in enumerate((2, 1, 2, 1)):
    cout = m.d_width * 2 ** i
    d_layers.append(Conv(cin, cout, (3, 3), stride, "SAME", dtype=dtype, rngs=rngs))
    d_layers += _norm(m.d_norm, cout, 4, dtype, rngs)
    d_layers += [Activation("leaky_relu"), Dropout(m.d_dropout)]
    cin, size = cout, -(-size // stride)
  d_layers.append(Flatten())
  return g, Sequential(*d_layers), size * size * cin


def dcgan_stages(shape: tuple[int, ...]) -> int:
  """Stride-2 stages from DCGAN's small start to `shape`: halve the side while it is even and
  above 4 (28 -> 14 -> 7: 2 stages; 32 -> 16 -> 8 -> 4: 3)."""
  side, stages = shape[0], 0
  while side % 2 == 0 and side > 4:
    side, stages = side // 2, stages + 1
  return stages


# For each architecture: its body builder, and which image shapes it has a layout for.
ARCHITECTURES = {
    "mlp": (_mlp, lambda s: len(s) == 3, "any image shape"),
    "dcgan": (_dcgan, lambda s: len(s) == 3 and s[0] == s[1] and dcgan_stages(s) > 0,
              "square images with an even side (e.g. 28x28, 32x32, 64x64)"),
    "resnet": (lambda m, shape, k, zin, dtype, rngs: resnet.bodies(  # pylint: disable=g-long-lambda
        m, shape, k, zin, dtype, rngs, dcgan_stages(shape), _init(m.init),
        lambda c: _norm(m.d_norm, c, 4, dtype, rngs)),
               lambda s: resnet.stages_fit(s, dcgan_stages(s)),
               "square images of side s * 2^n, n >= 2, s <= 8 (e.g. 28x28, 32x32, 64x64)"),
    "keras_acgan": (_keras_acgan, lambda s: len(s) == 3 and s[0] == s[1] and s[0] % 4 == 0,
                    "square images whose side is a multiple of 4 (e.g. 28x28, 32x32)"),
}


def build(m: ml_collections.ConfigDict, image_shape: tuple[int, ...], num_classes: int, dtype,
          key) -> tuple[Generator, Discriminator]:
  """G and D for config.model on images of image_shape (H, W, C) in num_classes classes."""
  body, supports, supported = ARCHITECTURES[m.arch]
  shape = tuple(image_shape)
  if not supports(shape):
    raise ConfigError(f"config.model.arch={m.arch!r} has no layout for {shape} examples; it "
                      f"supports {supported}. Choose another config.model.arch.")
  rngs = nnx.Rngs(params=key)
  zin = m.latent_dim + (num_classes if m.conditioning == "concat" else 0)
  g_body, d_body, features = body(m, shape, num_classes, zin, dtype, rngs)
  g = Generator(g_body, m.latent_dim, num_classes, m.conditioning, rngs=rngs)
  d = Discriminator(d_body, features, num_classes, m.d_conditional, m.aux_classifier,
                    flat_input=m.arch == "mlp", projection=m.d_projection, dtype=dtype, rngs=rngs)
  if m.spectral_norm != "none":  # after every other initializer: the others' draws don't move
    spectral.apply(d, rngs)
    if m.spectral_norm == "g_and_d":
      spectral.apply(g, rngs)
  out = jax.eval_shape(lambda: g(jnp.zeros((1, m.latent_dim)), jnp.zeros((1,), jnp.int32)))
  if out.shape[1:] != shape:  # a layout bug, never the user's: say so before any compile
    raise ConfigError(f"config.model.arch={m.arch!r} builds {out.shape[1:]} images for "
                      f"{shape} data; this shape is not supported.")
  return g, d
