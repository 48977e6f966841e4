"""WGAN-GP (Gulrajani et al. 2017): gradient penalty lambda 10, layer-norm critic, Adam (0.5, 0.9).

    python -m gan.main --config=configs/wgan_gp.py
    python -m gan.main --config=configs/wgan_gp.py:cpu
    python -m gan.main --config=configs/wgan_gp.py:cifar10   # the paper's CIFAR-10 DCGAN-style model

:cifar10 follows the authors' DCGAN-style CIFAR-10 model (gan_cifar.py in their code, DIM = 128):
G maps z ~ N(0, 1)^128 to 4x4x512, then transposed convolutions to 8x8x256, 16x16x128 and
32x32x3 (tanh) with batch norm and ReLU; the critic is strided convolutions of 128, 256, 512
channels with LeakyReLU and no normalization; lambda 10, 5 critic steps, Adam 1e-4 with betas
(0.5, 0.9), batch 64. (The paper's best CIFAR-10 numbers use a ResNet; this is its DCGAN model.)
"""

from configs import gan_base
from common import options


def get_config(preset: str = ""):
  c = gan_base.get_config()
  c.name = "wgan_gp"
  c.model.arch = "dcgan"
  c.model.latent_dim = 128
  c.model.d_norm = "layer"       # no batch norm in the critic: the penalty is per example
  c.loss.d = "wasserstein"
  c.loss.g = "wasserstein"
  c.loss.gp_weight = 10.0
  c.d_steps = 5
  c.g_optimizer.update(options.optimizer_values("adam", learning_rate=1e-4, b1=0.5, b2=0.9))
  c.d_optimizer.update(options.optimizer_values("adam", learning_rate=1e-4, b1=0.5, b2=0.9))
  c.batch_size = 64
  c.num_epochs = 100
  if preset == "cpu":
    gan_base.cpu(c)
    # Twice the paper's rate: 10 epochs at 1e-4 gave classifier score 6.1; 12 at 2e-4 give 7.2.
    c.g_optimizer.learning_rate = c.d_optimizer.learning_rate = 2e-4
    c.num_epochs = 12
  if preset == "cifar10":
    c.name = "wgan_gp_cifar10"
    c.dataset = "cifar10"
    c.model.g_width = 128            # G: 4x4x512 -> 8x8x256 -> 16x16x128 -> 32x32x3
    c.model.d_width = 128            # critic: 128 -> 256 -> 512
    c.model.d_norm = "none"
    c.classifier_workdir = "runs/cnn_cifar10"
  return gan_base.finish(c, preset, own=("cifar10",))


def get_sweep(name: str) -> list[dict]:
  """Named override sets for scripts/sweep.py, e.g.

      python scripts/sweep.py --config=configs/wgan_gp.py:cpu --sweep=ablation
  """
  from common import sweeps  # pylint: disable=g-import-not-at-top
  if name == "ablation":  # gradient-penalty lambda x critic steps per generator step
    return sweeps.product(**{"loss.gp_weight": [1.0, 10.0, 100.0], "d_steps": [1, 5]})
  raise sweeps.unknown_sweep(name, ("ablation",))
