"""WGAN (Arjovsky et al. 2017): a weight-clipped critic (c = 0.01), 5 critic steps, RMSProp 5e-5.

    python -m gan.main --config=configs/wgan.py
    python -m gan.main --config=configs/wgan.py:cpu
"""

from configs import gan_base
from common import options


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
  for player in (c.g_optimizer, c.d_optimizer):
    player.update(options.optimizer_values("rmsprop", learning_rate=5e-5, rho=0.99, eps=1e-8))
  c.batch_size = 64
  c.num_epochs = 100
  if preset == "cpu":
    gan_base.cpu(c)
    # Weight clipping learns slowly, so on 2 cores the generator gets as many updates as fit (one
    # critic step each), a faster rate than the critic's, and samples come from G's weight
    # average. Classifier scores (BENCHMARKS.md): 5 critic steps, 22 epochs, 2e-4: 5.85; 2 critic
    # steps: 6.39; 1 critic step, 18 epochs, 2e-4: 6.88 (6.94 with the average); both at 4e-4:
    # 7.01 and 7.03 (two seeds); both at 8e-4 or critic 4e-4 with G 2e-4: worse by epoch 10;
    # cosine decay: 6.66; G 4e-4 with critic 2e-4: 7.12, 7.19, 7.22 after 16, 17 (this preset),
    # 18 epochs; 18 took 9 min 56 s, too close to the 10 minutes.
    c.g_optimizer.learning_rate = 4e-4
    c.d_optimizer.learning_rate = 2e-4
    c.g_ema_decay = 0.999
    c.d_steps = 1
    c.num_epochs = 17
  return gan_base.finish(c, preset)
