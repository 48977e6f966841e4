"""Layers: the course's worked examples, pooling, and the Keras summary of the course model."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from common.nn import layers
from cnn import models


def test_course_1d_convolution_and_pooling_example():
  # The lecture pads the SERIES with two zeros at each end:
  #   0 0 1,2 0,9 -0,8 0,7 1,5 -1,3 -1,0 0,7 1,3 1,4 0 0
  # then convolves it with the filter (1, 2, 1) and keeps the maximum of each three outputs.
  series = jnp.array([1.2, 0.9, -0.8, 0.7, 1.5, -1.3, -1.0, 0.7, 1.3, 1.4]).reshape(1, 10, 1)
  conv = layers.Conv(1, 1, (3,), padding=((2, 2),), rngs=nnx.Rngs(0))
  conv.conv.kernel[...] = jnp.array([1.0, 2.0, 1.0]).reshape(3, 1, 1)
  conv.conv.bias[...] = jnp.zeros(1)
  out = conv(series)
  np.testing.assert_allclose(out[0, :, 0], [
      1.2,   # 0 + 2*0 + 1.2
      3.3,   # 0 + 2*1.2 + 0.9
      2.2,   # 1.2 + 2*0.9 - 0.8
      0.0,   # 0.9 - 2*0.8 + 0.7
      2.1,   # -0.8 + 2*0.7 + 1.5
      2.4,   # 0.7 + 2*1.5 - 1.3
      -2.1,  # 1.5 - 2*1.3 - 1.0
      -2.6,  # -1.3 - 2*1.0 + 0.7
      1.7,   # -1.0 + 2*0.7 + 1.3
      4.7,   # 0.7 + 2*1.3 + 1.4
      4.1,   # 1.3 + 2*1.4 + 0
      1.4,   # 1.4 + 2*0 + 0
  ], atol=1e-6)
  pooled = layers.MaxPool(3, ndim=1)(out)
  np.testing.assert_allclose(pooled[0, :, 0], [
      3.3,  # max(1.2, 3.3, 2.2)
      2.4,  # max(0.0, 2.1, 2.4)
      1.7,  # max(-2.1, -2.6, 1.7)
      4.7,  # max(4.7, 4.1, 1.4)
  ], atol=1e-6)


def test_course_2x2_max_pool_example():
  image = jnp.array([[1, 1, 2, 4],
                     [5, 6, 7, 8],
                     [3, 2, 1, 0],
                     [1, 2, 3, 4]], jnp.float32).reshape(1, 4, 4, 1)
  np.testing.assert_array_equal(layers.max_pool(image, 2)[0, :, :, 0], [[6, 8], [3, 4]])


def test_max_pool_matches_reduce_window_and_floors_odd_sizes():
  x = jax.random.normal(jax.random.PRNGKey(0), (2, 27, 26, 3))
  expected = nnx.max_pool(x, (2, 2), strides=(2, 2), padding="VALID")
  np.testing.assert_array_equal(layers.max_pool(x, 2), expected)
  g1 = jax.grad(lambda x: (layers.max_pool(x, 2) ** 2).sum())(x)
  g2 = jax.grad(lambda x: (nnx.max_pool(x, (2, 2), strides=(2, 2)) ** 2).sum())(x)
  np.testing.assert_allclose(g1, g2, atol=1e-6)


def test_dropout_keeps_expectation_and_rate():
  x = jnp.ones((100_000,))
  y = layers.dropout(x, 0.25, jax.random.PRNGKey(0))
  assert abs(float((y == 0).mean()) - 0.25) < 0.01
  assert abs(float(y.mean()) - 1.0) < 0.02


def test_seed_cnn_summary_matches_keras():
  model = models.seed_cnn((28, 28, 1), 10, rngs=nnx.Rngs(0))
  text = layers.summary(model, (28, 28, 1), "cnn_seed")
  assert layers.count_params(model) == 27_320
  for row in ["conv2d (Conv2D)", "(None, 26, 26, 16)", "160",
              "max_pooling2d (MaxPooling2D)", "(None, 13, 13, 16)",
              "flatten (Flatten)", "(None, 2704)", "dense (Dense)", "27,050",
              "dropout_1 (Dropout)", "dense_1 (Dense)", "110", "Total params: 27,320",
              "Trainable params: 27,320", "Non-trainable params: 0"]:
    assert row in text, row


def test_one_dimensional_vgg_runs_on_sequences():
  model = models.vgg_cnn((40, 1), 10, rngs=nnx.Rngs(0))
  out = model(jnp.zeros((4, 40, 1)), train=True, key=jax.random.PRNGKey(0))
  assert out.shape == (4, 10)


def test_fused_first_conv_and_pool_equal_the_layers_applied_one_by_one():
  model = models.seed_cnn((28, 28, 1), 10, rngs=nnx.Rngs(0))
  graphdef, params = nnx.split(model, nnx.Param)
  x = jax.random.uniform(jax.random.PRNGKey(1), (8, 28, 28, 1))
  key = jax.random.PRNGKey(2)

  def loss(params, fused):
    m = nnx.merge(graphdef, params, copy=True)
    if fused:
      return jnp.sum(m(x, train=True, key=key) ** 2)
    h = x
    for i, layer in enumerate(m.layers):
      h = layer(h, train=True, key=jax.random.fold_in(key, i) if layer.stochastic else None)
    return jnp.sum(h ** 2)

  assert isinstance(model.layers[0], layers.Conv) and model.layers[1].fuse_conv
  g_fused = jax.grad(loss)(params, True)
  g_plain = jax.grad(loss)(params, False)
  for a, b in zip(jax.tree.leaves(g_fused), jax.tree.leaves(g_plain)):
    np.testing.assert_allclose(a, b, rtol=2e-5, atol=1e-6)


def test_upsample_then_conv_runs_fused_and_equals_the_layers_one_by_one():
  rngs = nnx.Rngs(0)
  model = layers.Sequential(layers.UpSample(2, fuse_conv=True),
                            layers.Conv(4, 6, (5, 5), padding="SAME", activation="relu", rngs=rngs),
                            layers.UpSample(2, fuse_conv=True),
                            layers.Conv(6, 3, (3, 3), padding="SAME", rngs=rngs))
  graphdef, params = nnx.split(model, nnx.Param)
  x = jax.random.normal(jax.random.PRNGKey(1), (2, 5, 5, 4))

  def loss(params, fused):
    m = nnx.merge(graphdef, params, copy=True)
    if fused:
      return jnp.sum(jnp.sin(m(x)))
    h = x
    for layer in m.layers:
      h = layer(h)
    return jnp.sum(jnp.sin(h))

  assert model(x).shape == (2, 20, 20, 3)
  assert np.isclose(loss(params, True), loss(params, False), rtol=1e-5)
  for a, b in zip(jax.tree.leaves(jax.grad(loss)(params, True)),
                  jax.tree.leaves(jax.grad(loss)(params, False))):
    # Winograd sums in another order: agree to 1e-5 of each gradient's largest entry.
    np.testing.assert_allclose(a, b, rtol=2e-5, atol=1e-5 * float(np.abs(b).max()))


def test_the_builders_fusions_run_their_kernels_and_bad_pairs_are_refused(monkeypatch):
  """MaxPool/UpSample(fuse_conv=True) call the fused kernels; a pair the kernel can't take raises
  when the model is built."""
  calls = []
  for name in ("conv_relu_maxpool", "upsample_conv"):
    real = getattr(layers.kernels, name)
    monkeypatch.setattr(layers.kernels, name,
                        lambda *a, real=real, name=name: calls.append(name) or real(*a))
  models.seed_cnn((28, 28, 1), 10, rngs=nnx.Rngs(0))(jnp.zeros((2, 28, 28, 1)))
  rngs = nnx.Rngs(0)
  layers.Sequential(layers.UpSample(2, fuse_conv=True),
                    layers.Conv(4, 6, (3, 3), padding="SAME", rngs=rngs))(jnp.zeros((1, 3, 3, 4)))
  assert calls == ["conv_relu_maxpool", "upsample_conv"]
  with pytest.raises(ValueError, match="stride-1 'VALID' Conv with relu"):
    layers.Sequential(layers.Conv(1, 4, (3, 3), padding="SAME", activation="relu", rngs=rngs),
                      layers.MaxPool(2, fuse_conv=True))
  with pytest.raises(ValueError, match="second layer"):
    layers.Sequential(layers.Flatten(), layers.Conv(1, 4, (3, 3), activation="relu", rngs=rngs),
                      layers.MaxPool(2, fuse_conv=True))
  with pytest.raises(ValueError, match="stride-1 'SAME' Conv"):
    layers.Sequential(layers.UpSample(2, fuse_conv=True),
                      layers.Conv(4, 6, (3, 3), strides=2, padding="SAME", rngs=rngs))


def test_course_cnn_sizes_its_dense_layer_from_the_input_shape():
  # CIFAR-100's 32x32x3: conv 3*9*16 + 16 = 448; pooled 15x15x16 = 3600 inputs to Dense(10):
  # 36,010; Dense(10 -> 100): 1,100.
  model = models.seed_cnn((32, 32, 3), 100, rngs=nnx.Rngs(0))
  assert layers.count_params(model) == 448 + 36_010 + 1_100
  assert model(jnp.zeros((2, 32, 32, 3))).shape == (2, 100)
