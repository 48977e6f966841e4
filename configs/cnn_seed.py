"""The course's Keras CNN on MNIST, trained as the course does (27,320 parameters, Adadelta, 50 epochs).

    python -m cnn.main --config=configs/cnn_seed.py
    python -m cnn.main --config=configs/cnn_seed.py:cpu     # 2 epochs, a smoke test

Course result: test loss 0.1569, test accuracy 0.9723.
"""

from configs import cnn_base
from common import options


def get_config(preset: str = ""):
  c = cnn_base.get_config()
  c.name = "cnn_seed"
  c.model.name = "seed"
  # Keras's Adadelta defaults.
  c.optimizer.update(options.optimizer_values("adadelta", learning_rate=1.0, rho=0.95, eps=1e-7))
  c.batch_size = 128
  c.num_epochs = 50
  c.validation_split = 0.2
  if preset == "cpu":
    c.name = "cnn_seed_cpu"
    c.num_epochs = 2
  return cnn_base.finish(c, preset)
