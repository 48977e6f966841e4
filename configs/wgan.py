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
    # Weight clipping learns slowly, so on 2 cores the generator gets as many updates as fit:
    # one critic step each. Measured (BENCHMARKS.md), classifier score: 5 critic steps, 22 epochs:
    # 5.85; 2 critic steps, 20 epochs: 6.39 (Adam 1e-4 (0.5, 0.9): 6.23; clip 0.05: 6.49);
    # 1 critic step, 16 epochs: 6.85 in 8 minutes; 18 epochs (this preset): 6.88 in 9 min 16 s.
    c.g_optimizer.learning_rate = c.d_optimizer.learning_rate = 2e-4
    c.d_steps = 1
    c.num_epochs = 18
  return gan_base.finish(c, preset)
