"""A 1-D CNN on MNIST-1D (generated offline by the mnist1d package: seed 42, 4000 train/1000 test).

    python -m cnn.main --config=configs/cnn1d.py

Target: >= 94% test accuracy, the MNIST-1D paper's CNN baseline. The same Conv and MaxPool layers
as the 2-D models, with 1-D kernels.
"""

from configs import cnn_base
from common import options


def get_config(preset: str = ""):
  c = cnn_base.get_config()
  c.name = "cnn1d"
  c.dataset = "mnist1d"
  c.model.name = "vgg"
  c.model.widths = (32, 64)
  c.model.hidden = 128
  c.model.dropout = 0.3
  c.optimizer.update(options.optimizer_values("adam", learning_rate=3e-3, schedule="onecycle",
                                                warmup_fraction=0.1))
  c.batch_size = 100
  c.eval_batch_size = 500
  c.num_epochs = 100
  if preset == "cpu":
    c.name = "cnn1d_cpu"
    c.num_epochs = 30
  c = cnn_base.finish(c, preset)
  if preset == "test":
    c.train_examples = 0
    c.validation_split = 0.1
  return c
