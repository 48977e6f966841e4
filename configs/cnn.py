"""A strong MNIST CNN: VGG-style conv-BN-ReLU blocks (32, 64), Adam with one-cycle cosine decay.

    python -m cnn.main --config=configs/cnn.py
    python -m cnn.main --config=configs/cnn.py:cpu      # fewer epochs

Target: >= 99.3% MNIST test accuracy (Keras's mnist_convnet example reports about 99.1%).
"""

from configs import cnn_base
from common import optim


def get_config(preset: str = ""):
  c = cnn_base.get_config()
  c.name = "cnn"
  c.model.name = "vgg"
  c.model.widths = (32, 64)
  c.model.hidden = 128
  c.model.dropout = 0.5
  c.optimizer = optim.default("adam", learning_rate=3e-3, schedule="onecycle",
                              warmup_fraction=0.1)
  c.batch_size = 128
  c.num_epochs = 10
  if preset == "cpu":
    c.name = "cnn_cpu"
    c.num_epochs = 3
  return cnn_base.finish(c, preset)
