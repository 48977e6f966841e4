"""CNN classifiers as `Sequential` stacks: the course's Keras model, a strong 2-D CNN, a 1-D CNN."""

from flax import nnx

from common.layers import BatchNorm, Activation, Conv, Dense, Dropout, Flatten, MaxPool, Sequential


def seed_cnn(num_classes: int = 10, in_channels: int = 1, *, dtype=None,
             rngs: nnx.Rngs) -> Sequential:
  """The course's model: 27,320 parameters on 28x28x1 (conv 160, dense 27,050, dense 110).

  Conv2D(16, 3x3, relu, valid) -> MaxPool 2x2 -> Dropout 0.25 -> Flatten -> Dense(10, relu)
  -> Dropout 0.5 -> Dense(10); the softmax lives in the loss (from logits, numerically stable).
  """
  return Sequential(
      Conv(in_channels, 16, (3, 3), activation="relu", dtype=dtype, rngs=rngs),
      MaxPool(2),
      Dropout(0.25),
      Flatten(),
      Dense(13 * 13 * 16, 10, activation="relu", dtype=dtype, rngs=rngs),
      Dropout(0.5),
      Dense(10, num_classes, dtype=dtype, rngs=rngs),
  )


def _conv_bn_relu(cin: int, cout: int, kernel: tuple[int, ...], dtype, rngs) -> list:
  return [Conv(cin, cout, kernel, padding="SAME", dtype=dtype, rngs=rngs),
          BatchNorm(cout, dtype=dtype, rngs=rngs), Activation("relu")]


def vgg_cnn(num_classes: int = 10, in_channels: int = 1, image_size: int = 28,
            widths: tuple[int, ...] = (32, 64), hidden: int = 128, dropout: float = 0.5,
            ndim: int = 2, *, dtype=None, rngs: nnx.Rngs) -> Sequential:
  """A VGG-style stack: per width two conv-BN-ReLU blocks then a 2x max pool; a dense head.

  ndim=2 for images [B, H, W, C]; ndim=1 for sequences [B, L, C] (the same layers, 1-D kernels).
  """
  kernel = (3,) * ndim
  layers, cin, size = [], in_channels, image_size
  for width in widths:
    layers += _conv_bn_relu(cin, width, kernel, dtype, rngs)
    layers += _conv_bn_relu(width, width, kernel, dtype, rngs)
    layers.append(MaxPool(2, ndim))
    cin, size = width, size // 2
  layers += [Flatten(), Dense(cin * size ** ndim, hidden, activation="relu", dtype=dtype, rngs=rngs),
             Dropout(dropout), Dense(hidden, num_classes, dtype=dtype, rngs=rngs)]
  return Sequential(*layers)


def lenet_cnn(num_classes: int = 10, in_channels: int = 1, image_size: int = 28,
              widths: tuple[int, ...] = (32, 64), hidden: int = 256, dropout: float = 0.5,
              ndim: int = 2, *, dtype=None, rngs: nnx.Rngs) -> Sequential:
  """LeNet-style: per width a 5x5 valid conv + ReLU + 2x max pool; a dense head with dropout.

  Cheap on CPU: the first conv + pool run as one fused kernel (see common.layers.Sequential).
  """
  kernel = (5,) * ndim
  layers, cin, size = [], in_channels, image_size
  for width in widths:
    layers += [Conv(cin, width, kernel, activation="relu", dtype=dtype, rngs=rngs),
               MaxPool(2, ndim)]
    cin, size = width, (size - 4) // 2
  layers += [Flatten(), Dense(cin * size ** ndim, hidden, activation="relu", dtype=dtype, rngs=rngs),
             Dropout(dropout), Dense(hidden, num_classes, dtype=dtype, rngs=rngs)]
  return Sequential(*layers)


MODELS = {"seed": seed_cnn, "vgg": vgg_cnn, "lenet": lenet_cnn}
