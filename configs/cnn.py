"""A strong MNIST CNN: LeNet-style 5x5 convs (32, 64), random 2-pixel shifts, Adam one-cycle.

    python -m cnn.main --config=configs/cnn.py
    python -m cnn.main --config=configs/cnn.py:cpu      # fewer epochs
    python -m cnn.main --config=configs/cnn.py:fashion_mnist --config.manual_dir=DIR  # Fashion-MNIST

Target: >= 99.3% MNIST test accuracy (Keras's mnist_convnet example reports about 99.1%).
"""

from configs import cnn_base
from common import options


def get_config(preset: str = ""):
  c = cnn_base.get_config()
  c.name = "cnn"
  c.model.name = "lenet"
  c.model.widths = (32, 64)
  c.model.hidden = 256
  c.model.dropout = 0.5
  c.augment_shift = 2
  c.optimizer.update(options.optimizer_values("adam", learning_rate=2e-3, schedule="onecycle",
                                                warmup_fraction=0.1))
  c.batch_size = 128
  c.num_epochs = 12
  if preset == "cpu":
    c.name = "cnn_cpu"
    c.num_epochs = 3
  if preset == "fashion_mnist":  # VGG-style pairs, flips: 94.08% test accuracy (BENCHMARKS.md)
    c.name = "cnn_fashion_mnist"
    c.dataset = "fashion_mnist"
    c.model.name = "vgg"
    c.model.widths = (32, 64)
    c.model.hidden = 256
    c.augment_shift = 1
    c.augment_flip = True
    c.num_epochs = 15
  return cnn_base.finish(c, preset, own=("fashion_mnist",))
