"""Layers with one calling convention, `layer(x, *, train, key)`, and a Keras-like `Sequential`.

Inputs are channels-last: [B, L, C] for sequences (1-D) and [B, H, W, C] for images (2-D); the
same Conv and MaxPool serve both. Pooling is written as reshape-and-max because XLA:CPU
differentiates that several times faster than `lax.reduce_window` (see BENCHMARKS.md).
"""

import re
from typing import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from common.nn import kernels

ACTIVATIONS = {"relu": jax.nn.relu, "leaky_relu": lambda x: jax.nn.leaky_relu(x, 0.2),
               "tanh": jnp.tanh, "sigmoid": jax.nn.sigmoid, "linear": None, None: None}


max_pool = kernels.max_pool


def dropout(x: jax.Array, rate: float, key: jax.Array) -> jax.Array:
  """Inverted dropout, as Keras: kept units are scaled by 1 / (1 - rate).

  The mask compares random bytes with a threshold: exact for rates that are multiples of 1/256
  (0.25, 0.5, ...), and 4x cheaper on CPU than jax.random.bernoulli's floats.
  """
  threshold = rate * 256
  if threshold == int(threshold):
    keep = jax.random.bits(key, x.shape, jnp.uint8) >= jnp.uint8(threshold)
  else:
    keep = jax.random.bits(key, x.shape, jnp.uint32) >= jnp.uint32(min(rate * 2**32, 2**32 - 1))
  return jnp.where(keep, x * (1.0 / (1.0 - rate)), jnp.zeros((), x.dtype))


class Layer(nnx.Module):
  """Base of the layers below: `keras_name` is the type shown by `summary`."""
  keras_name = "Layer"
  stochastic = False

  def __call__(self, x, *, train: bool = False, key: jax.Array | None = None):
    raise NotImplementedError


class Dense(Layer):
  keras_name = "Dense"

  def __init__(self, in_features: int, features: int, activation: str | None = None, *,
               use_bias: bool = True, dtype=None,
               kernel_init=nnx.initializers.glorot_uniform(), rngs: nnx.Rngs):
    self.linear = nnx.Linear(in_features, features, use_bias=use_bias, dtype=dtype,
                             kernel_init=kernel_init, rngs=rngs)
    self.activation = ACTIVATIONS[activation]

  def __call__(self, x, *, train=False, key=None):
    y = self.linear(x)
    return self.activation(y) if self.activation else y


class Conv(Layer):
  """Conv1D or Conv2D by the length of kernel_size; Keras's glorot-uniform init by default."""

  def __init__(self, in_features: int, features: int, kernel_size: Sequence[int],
               strides: int = 1, padding: str = "VALID", activation: str | None = None, *,
               dtype=None, kernel_init=nnx.initializers.glorot_uniform(), rngs: nnx.Rngs):
    self.keras_name = f"Conv{len(kernel_size)}D"
    self.conv = nnx.Conv(in_features, features, tuple(kernel_size), strides, padding=padding,
                         dtype=dtype, kernel_init=kernel_init, rngs=rngs)
    self.strides = (strides,) * len(kernel_size)
    self.padding = padding
    self.activation = ACTIVATIONS[activation]
    self.activation_name = activation

  def weights(self, x):
    """(x, kernel, bias) in the compute dtype."""
    dtype = self.conv.dtype or x.dtype
    return (x.astype(dtype), self.conv.kernel[...].astype(dtype),
            self.conv.bias[...].astype(dtype))

  def __call__(self, x, *, train=False, key=None):
    y = kernels.conv(*self.weights(x), self.strides, self.padding)
    return self.activation(y) if self.activation else y

  def check_fusable(self, kernel: str, padding: str, relu: bool = False) -> None:
    """Raises ValueError unless this conv can run inside `kernel` (stride 1, `padding`)."""
    if self.padding != padding or set(self.strides) != {1} or (relu and
                                                               self.activation_name != "relu"):
      raise ValueError(f"kernels.{kernel} needs a stride-1 {padding!r} Conv"
                       f"{' with relu' if relu else ''}; got strides {self.strides}, padding "
                       f"{self.padding!r}, activation {self.activation_name!r}.")


class Embed(Layer):
  """A learned vector per class: labels [B] -> [B, features]."""
  keras_name = "Embedding"

  def __init__(self, num_classes: int, features: int, *,
               embedding_init=nnx.initializers.glorot_uniform(), rngs: nnx.Rngs):
    self.embed = nnx.Embed(num_classes, features, embedding_init=embedding_init, rngs=rngs)

  def __call__(self, x, *, train=False, key=None):
    return self.embed(x)


class MaxPool(Layer):
  """Max pooling; `fuse_conv=True` (the builder's choice, for the model's first two layers: a relu
  'VALID' stride-1 Conv, then this pool) runs both as kernels.conv_relu_maxpool, several times
  faster on CPU (the model's input needs no gradient)."""

  def __init__(self, window: int = 2, ndim: int = 2, *, fuse_conv: bool = False):
    self.keras_name = f"MaxPooling{ndim}D"
    self.window = window
    self.fuse_conv = fuse_conv

  def __call__(self, x, *, train=False, key=None):
    return max_pool(x, self.window)


class Dropout(Layer):
  keras_name = "Dropout"
  stochastic = True

  def __init__(self, rate: float):
    self.rate = rate

  def __call__(self, x, *, train=False, key=None):
    if not train or self.rate == 0.0:
      return x
    return dropout(x, self.rate, key)


class Flatten(Layer):
  keras_name = "Flatten"

  def __call__(self, x, *, train=False, key=None):
    return x.reshape(x.shape[0], -1)


class BatchNorm(Layer):
  """Batch normalization; statistics are nnx.BatchStat variables (the model_state)."""
  keras_name = "BatchNormalization"

  def __init__(self, features: int, momentum: float = 0.9, *, dtype=None, rngs: nnx.Rngs):
    self.norm = nnx.BatchNorm(features, momentum=momentum, epsilon=1e-5, dtype=dtype, rngs=rngs)

  def __call__(self, x, *, train=False, key=None):
    return self.norm(x, use_running_average=not train)


class Activation(Layer):
  keras_name = "Activation"

  def __init__(self, name: str):
    self.fn = ACTIVATIONS[name]

  def __call__(self, x, *, train=False, key=None):
    return self.fn(x)


class ConvTranspose(Layer):
  """Transposed convolution (DCGAN's up-sampling layer)."""

  def __init__(self, in_features: int, features: int, kernel_size: Sequence[int],
               strides: int = 2, padding: str = "SAME", activation: str | None = None, *,
               dtype=None, kernel_init=nnx.initializers.glorot_uniform(), rngs: nnx.Rngs):
    self.keras_name = f"Conv{len(kernel_size)}DTranspose"
    self.conv = nnx.ConvTranspose(in_features, features, tuple(kernel_size),
                                  (strides,) * len(kernel_size), padding=padding, dtype=dtype,
                                  kernel_init=kernel_init, rngs=rngs)
    self.strides = (strides,) * len(kernel_size)
    self.padding = padding
    self.activation = ACTIVATIONS[activation]

  def __call__(self, x, *, train=False, key=None):
    dtype = self.conv.dtype or x.dtype
    y = kernels.conv_transpose(x.astype(dtype), self.conv.kernel[...].astype(dtype),
                               self.conv.bias[...].astype(dtype), self.strides, self.padding)
    return self.activation(y) if self.activation else y


class UpSample(Layer):
  """Nearest-neighbour up-sampling by an integer factor on every spatial axis (Keras's default).
  `fuse_conv=True` (the builder's choice; the next layer a 'SAME' stride-1 Conv) runs both as
  kernels.upsample_conv, which never builds the up-sampled image (2.8x fewer FLOPs for 5x5 after
  2x)."""
  keras_name = "UpSampling2D"

  def __init__(self, factor: int = 2, *, fuse_conv: bool = False):
    self.factor = factor
    self.fuse_conv = fuse_conv

  def __call__(self, x, *, train=False, key=None):
    for axis in range(1, x.ndim - 1):
      x = jnp.repeat(x, self.factor, axis=axis)
    return x


class Reshape(Layer):
  keras_name = "Reshape"

  def __init__(self, shape: Sequence[int]):
    self.shape = tuple(shape)

  def __call__(self, x, *, train=False, key=None):
    return x.reshape((x.shape[0],) + self.shape)


class LayerNorm(Layer):
  """Per-example normalization over all features: a critic normalization that keeps WGAN-GP valid."""
  keras_name = "LayerNormalization"

  def __init__(self, features: int, input_ndim: int = 4, *, dtype=None, rngs: nnx.Rngs):
    axes = tuple(range(-(input_ndim - 1), 0))  # every axis but the batch
    self.norm = nnx.LayerNorm(features, reduction_axes=axes, dtype=dtype, rngs=rngs)

  def __call__(self, x, *, train=False, key=None):
    return self.norm(x)


class Sequential(nnx.Module):
  """Layers applied in order; stochastic layers get fold_in(key, index).

  A layer built with `fuse_conv=True` (MaxPool, UpSample) runs together with its Conv as one
  kernel of common/nn/kernels.py, the same function; the pairs are checked here, when built.
  """

  def __init__(self, *layers: Layer):
    self.layers = nnx.List(layers)
    for i, layer in enumerate(layers):
      if isinstance(layer, MaxPool) and layer.fuse_conv:
        if i != 1 or not isinstance(layers[0], Conv):
          raise ValueError("MaxPool(fuse_conv=True) must be the second layer, after a Conv: the "
                           "fused conv-relu-pool kernel gives its input no gradient.")
        layers[0].check_fusable("conv_relu_maxpool", "VALID", relu=True)
      if isinstance(layer, UpSample) and layer.fuse_conv:
        if i + 1 == len(layers) or not isinstance(layers[i + 1], Conv):
          raise ValueError("UpSample(fuse_conv=True) must come right before a Conv.")
        layers[i + 1].check_fusable("upsample_conv", "SAME")

  def __call__(self, x, *, train: bool = False, key: jax.Array | None = None):
    i = 0
    while i < len(self.layers):
      layer = self.layers[i]
      following = self.layers[i + 1] if i + 1 < len(self.layers) else None
      # A Conv wrapped later (gan/spectral.py normalizes its kernel) runs unfused.
      if isinstance(following, MaxPool) and following.fuse_conv and isinstance(layer, Conv):
        x = kernels.conv_relu_maxpool(*layer.weights(x), following.window)
        i += 2
      elif isinstance(layer, UpSample) and layer.fuse_conv and isinstance(following, Conv):
        y = kernels.upsample_conv(*following.weights(x), layer.factor)
        x = following.activation(y) if following.activation else y
        i += 2
      else:
        sub = jax.random.fold_in(key, i) if (layer.stochastic and train) else None
        x = layer(x, train=train, key=sub)
        i += 1
    return x


def count_params(module: nnx.Module) -> int:
  return sum(int(p.size) for p in jax.tree.leaves(nnx.state(module, nnx.Param)))


def summary(model: Sequential, input_shape: Sequence[int], name: str) -> str:
  """Keras's model.summary(): each layer's type, output shape and parameter count, then totals."""
  rows, spec = [], jax.ShapeDtypeStruct((1,) + tuple(input_shape), jnp.float32)
  counts: dict[str, int] = {}
  for layer in model.layers:
    spec = jax.eval_shape(lambda x, layer=layer: layer(x, train=False), spec)
    base = re.sub("([a-z])([A-Z])", r"\1_\2", layer.keras_name).lower()
    n = counts.get(base, 0)
    counts[base] = n + 1
    label = f"{base}{'_' + str(n) if n else ''} ({layer.keras_name})"
    rows.append((label, str((None,) + spec.shape[1:]), f"{count_params(layer):,}"))
  widths = [max(len(h), *(len(r[i]) for r in rows)) + 2
            for i, h in enumerate(("Layer (type)", "Output Shape", "Param #"))]
  line = lambda cells: "".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip()  # pylint: disable=g-long-lambda
  rule = "=" * sum(widths)
  total = count_params(model)
  other = sum(int(p.size) for p in jax.tree.leaves(nnx.state(model, nnx.BatchStat)))
  out = [f'Model: "{name}"', "_" * sum(widths), line(("Layer (type)", "Output Shape", "Param #")),
         rule]
  out += [line(r) for r in rows]
  out += [rule, f"Total params: {total + other:,}", f"Trainable params: {total:,}",
          f"Non-trainable params: {other:,}", "_" * sum(widths)]
  return "\n".join(out)
