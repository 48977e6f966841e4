"""The original GAN (Goodfellow et al. 2014): MLP generator and discriminator on MNIST.

    python -m gan.main --config=configs/gan.py
    python -m gan.main --config=configs/gan.py:cpu
    python -m gan.main --config=configs/gan.py --config.loss.g=minimax    # the saturating loss
"""

from configs import gan_base


def get_config(preset: str = ""):
  c = gan_base.get_config()
  c.name = "gan"
  c.model.arch = "mlp"
  c.model.latent_dim = 100
  c.model.g_width = 256          # 256 -> 512 -> 1024 -> 784
  c.model.d_width = 256          # 784 -> 512 -> 256 -> 1
  c.model.d_dropout = 0.3
  c.model.init = "default"
  c.loss.g = "non_saturating"
  c.batch_size = 64
  c.num_epochs = 50
  if preset == "cpu":
    c.name = "gan_cpu"
    c.num_epochs = 8
  return gan_base.finish(c, preset)
