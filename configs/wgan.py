"""WGAN (Arjovsky et al. 2017): a weight-clipped critic (c = 0.01), 5 critic steps, RMSProp 5e-5.

    python -m gan.main --config=configs/wgan.py
    python -m gan.main --config=configs/wgan.py:cpu
"""

from configs import gan_base
from common import optim


def get_config(preset: str = ""):
  c = gan_base.get_config()
  c.name = "wgan"
  c.model.arch = "dcgan"
  c.model.latent_dim = 100
  c.model.d_norm = "batch"
  c.loss.d = "wasserstein"
  c.loss.g = "wasserstein"
  c.loss.clip = 0.01
  c.d_steps = 5
  # PyTorch's RMSprop defaults, as in the authors' code: alpha 0.99, eps 1e-8.
  c.g_optimizer = optim.default("rmsprop", learning_rate=5e-5, rho=0.99, eps=1e-8)
  c.d_optimizer = optim.default("rmsprop", learning_rate=5e-5, rho=0.99, eps=1e-8)
  c.batch_size = 64
  c.num_epochs = 100
  if preset == "cpu":
    c.name = "wgan_cpu"
    c.model.g_width = 32
    c.model.d_width = 32
    # Classifier score 5.85 in about 8.5 minutes on 2 cores, short of the 7 the other presets
    # reach: weight clipping learns slowly (10 epochs: 4.19 at 5e-5, 5.01 at 2e-4).
    c.g_optimizer.learning_rate = c.d_optimizer.learning_rate = 2e-4
    c.num_epochs = 22
  return gan_base.finish(c, preset)
