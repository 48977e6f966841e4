"""DCGAN (Radford et al. 2016): strided (transposed) convolutions, batch norm, N(0, 0.02) init.

    python -m gan.main --config=configs/dcgan.py            # MNIST
    python -m gan.main --config=configs/dcgan.py:cpu
    python -m gan.main --config=configs/dcgan.py:cifar10    # the paper's CIFAR-10 model (GPU/TPU)

:cifar10 follows the paper: G maps z ~ U[-1, 1]^100 to 4x4x512, then fractionally-strided
convolutions to 8x8x256, 16x16x128 and 32x32x3 (tanh), batch norm and ReLU; D mirrors it with
strided convolutions of 64, 128, 256 channels, LeakyReLU 0.2, batch norm except on its input
layer. Adam 2e-4, beta1 0.5, batch 128, weights N(0, 0.02). (Our transposed convolutions are 4x4,
as in the authors' released Torch code for 64x64; the paper gives no epoch count for CIFAR-10:
we run 25.)
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
    gan_base.cpu(c)
    c.num_epochs = 15  # classifier score 7.14 in 9 min 51 s on 2 cores; 10 epochs gave 6.91
  if preset == "cifar10":
    c.name = "dcgan_cifar10"
    c.dataset = "cifar10"
    c.model.latent_dist = "uniform"
    c.model.g_width = 128          # G: 4x4x512 -> 8x8x256 -> 16x16x128 -> 32x32x3
    c.model.d_width = 64           # D: 16x16x64 -> 8x8x128 -> 4x4x256
    c.classifier_workdir = "runs/cnn_cifar10"
  return gan_base.finish(c, preset, own=("cifar10",))
