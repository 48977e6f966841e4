"""Conditional GAN (Mirza & Osindero 2014) with a DCGAN backbone: the label goes to G and to D.

    python -m gan.main --config=configs/cgan.py
    python -m gan.main --config=configs/cgan.py:cpu
"""

from configs import gan_base


def get_config(preset: str = ""):
  c = gan_base.get_config()
  c.name = "cgan"
  c.model.arch = "dcgan"
  c.model.latent_dim = 100
  c.model.conditioning = "concat"    # one-hot label concatenated to z
  c.model.d_conditional = True       # and to D's input as one constant channel per class
  c.model.g_width = 64
  c.model.d_width = 64
  c.batch_size = 64
  c.num_epochs = 25
  if preset == "cpu":
    gan_base.cpu(c)
    # 3 epochs: classifier score 8.48, conditional accuracy 0.836; 4 epochs: 8.88 and 0.892 in
    # 256 s on 2 cores (BENCHMARKS.md, time to quality).
    c.num_epochs = 4
  return gan_base.finish(c, preset)
