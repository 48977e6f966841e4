"""cGAN with a projection discriminator (Miyato and Koyama 2018) on the SNGAN ResNet: the label
reaches G only through conditional batch norm and D through the projection <embed(y), phi(x)>;
spectral norm in D, hinge loss, 5 D steps, Adam 2e-4 with betas (0, 0.9).

    python -m gan.main --config=configs/cgan_pd.py            # MNIST
    python -m gan.main --config=configs/cgan_pd.py:cpu
    python -m gan.main --config=configs/cgan_pd.py:cifar10    # the papers' CIFAR-10 setup
    python -m gan.main --config=configs/cgan_pd.py:cpu --config.model.g_shared_embedding=128

The reported numbers for this model (Miyato and Koyama 2018): CIFAR-10 Inception score 8.62,
FID 17.5 (the unconditional SNGAN: 8.22 and 21.7); ImageNet 128x128 Inception score 36.8, FID
27.62 (a larger ResNet than this one). Differences: as configs/sngan.py (FID by our classifier
unless Inception weights are configured). Every preset of configs/sngan.py (:cpu, :cifar10,
:test) applies, with the label switched on. g_shared_embedding=128 (the last command) gives G
BigGAN's shared class embedding in place of a gain and bias table per block (Brock et al. 2019).
"""

from configs import sngan


def get_config(preset: str = ""):
  c = sngan.get_config(preset)
  c.name = c.name.replace("sngan", "cgan_pd")
  c.model.conditioning = "cbn"      # conditional batch norm in every G block; z alone
  c.model.d_projection = True
  return c
