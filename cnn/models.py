"""CNN classifiers as `Sequential` stacks: the course's Keras model, a strong 2-D CNN, a 1-D CNN.

Each takes the dataset's example shape ((H, W, C) images or (L, C) sequences) and class count; the
dense head's input size is computed from the shape, never assumed.
"""

import math

from flax import nnx

from common.nn.layers import BatchNorm, Activation, Conv, Dense, Dropout, Flatten, MaxPool, Sequential
from common.config import ConfigError


SEED_HIDDEN = 10  # the course model's hidden dense layer (its width, not a class count)


def _after(shape: tuple[int, ...], shrink) -> tuple[int, ...]:
  """Spatial sizes after one stage; refuses a stage that leaves nothing."""
  out = tuple(shrink(s) for s in shape[:-1])
  if min(out) < 1:
    raise ConfigError(f"Inputs of shape {shape} are too small for this model's stages; use "
                      "fewer config.model.widths or a model for smaller inputs.")
  return out


def seed_cnn(input_shape: tuple[int, ...], num_classes: int, *, dtype=None,
             rngs: nnx.Rngs) -> Sequential:
  """The course's model: 27,320 parameters on MNIST's 28x28x1 and 10 classes (conv 160,
  dense 27,050, dense 110).

  Conv2D(16, 3x3, relu, valid) -> MaxPool 2x2 -> Dropout 0.25 -> Flatten -> Dense(SEED_HIDDEN, relu)
  -> Dropout 0.5 -> Dense(num_classes); the softmax lives in the loss (from logits, stable).
  """
  if len(input_shape) != 3:
    raise ConfigError(f"config.model.name='seed' is the course's 2-D CNN; inputs of shape "
                      f"{input_shape} need config.model.name='vgg' with config.model.ndim=1.")
  pooled = _after(input_shape, lambda s: (s - 2) // 2)
  return Sequential(
      Conv(input_shape[-1], 16, (3, 3), activation="relu", dtype=dtype, rngs=rngs),
      MaxPool(2, fuse_conv=True),  # one fused kernel with the conv: several times faster on CPU
      Dropout(0.25),
      Flatten(),
      Dense(math.prod(pooled) * 16, SEED_HIDDEN, activation="relu", dtype=dtype, rngs=rngs),
      Dropout(0.5),
      Dense(SEED_HIDDEN, num_classes, dtype=dtype, rngs=rngs),
  )


def _conv_bn_relu(cin: int, cout: int, kernel: tuple[int, ...], dtype, rngs) -> list:
  return [Conv(cin, cout, kernel, padding="SAME", dtype=dtype, rngs=rngs),
          BatchNorm(cout, dtype=dtype, rngs=rngs), Activation("relu")]


def _head(cin: int, spatial: tuple[int, ...], hidden: int, dropout: float, num_classes: int,
          dtype, rngs) -> list:
  return [Flatten(), Dense(cin * math.prod(spatial), hidden, activation="relu", dtype=dtype,
                           rngs=rngs),
          Dropout(dropout), Dense(hidden, num_classes, dtype=dtype, rngs=rngs)]


def vgg_cnn(input_shape: tuple[int, ...], num_classes: int, widths: tuple[int, ...] = (32, 64),
            hidden: int = 128, dropout: float = 0.5, *, dtype=None, rngs: nnx.Rngs) -> Sequential:
  """A VGG-style stack: per width two conv-BN-ReLU blocks then a 2x max pool; a dense head.

  2-D for images [B, H, W, C], 1-D for sequences [B, L, C]: the same layers, kernels of the
  input's rank.
  """
  ndim = len(input_shape) - 1
  kernel = (3,) * ndim
  layers, cin, spatial = [], input_shape[-1], tuple(input_shape)
  for width in widths:
    layers += _conv_bn_relu(cin, width, kernel, dtype, rngs)
    layers += _conv_bn_relu(width, width, kernel, dtype, rngs)
    layers.append(MaxPool(2, ndim))
    cin, spatial = width, _after(spatial, lambda s: s // 2) + (width,)
  return Sequential(*layers, *_head(cin, spatial[:-1], hidden, dropout, num_classes, dtype, rngs))


def lenet_cnn(input_shape: tuple[int, ...], num_classes: int, widths: tuple[int, ...] = (32, 64),
              hidden: int = 256, dropout: float = 0.5, *, dtype=None,
              rngs: nnx.Rngs) -> Sequential:
  """LeNet-style: per width a 5x5 valid conv + ReLU + 2x max pool; a dense head with dropout.

  Cheap on CPU: the first conv + pool run as one fused kernel (MaxPool(fuse_conv=True)).
  """
  ndim = len(input_shape) - 1
  kernel = (5,) * ndim
  layers, cin, spatial = [], input_shape[-1], tuple(input_shape)
  for width in widths:
    layers += [Conv(cin, width, kernel, activation="relu", dtype=dtype, rngs=rngs),
               MaxPool(2, ndim, fuse_conv=not layers)]  # the first pair: one fused kernel
    cin, spatial = width, _after(spatial, lambda s: (s - 4) // 2) + (width,)
  return Sequential(*layers, *_head(cin, spatial[:-1], hidden, dropout, num_classes, dtype, rngs))


MODELS = {"seed": seed_cnn, "vgg": vgg_cnn, "lenet": lenet_cnn}
