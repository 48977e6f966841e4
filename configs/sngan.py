"""SNGAN (Miyato et al. 2018): the ResNet generator and discriminator, spectral normalization in D,
the hinge loss, 5 D steps per G step, Adam 2e-4 with betas (0, 0.9), batch 64, z ~ N(0, 1)^128.

    python -m gan.main --config=configs/sngan.py            # MNIST, full width
    python -m gan.main --config=configs/sngan.py:cpu        # MNIST, narrow, for 2 CPU cores
    python -m gan.main --config=configs/sngan.py:cifar10    # the paper's CIFAR-10 setup (GPU/TPU)
    python scripts/sweep.py --config=configs/sngan.py:cpu --sweep=stabilizers --seeds=2

The paper's CIFAR-10 numbers for this model (ResNet, hinge loss, SN in D): Inception score
8.22, FID 21.7 (its own Inception protocol); StudioGAN's re-run reports FID 9.0 on its protocol
(training-set statistics, 50k samples). :cifar10 follows the paper's architecture and optimizer:
G 256 channels (4x4 -> three up-sampling blocks -> 32x32), D 128 channels (an optimized block, a
down-sampling block, two blocks), n_dis 5, Adam 2e-4 (0, 0.9), batch 64. Differences: 50k
generator updates (320 epochs of 50k images at 64 x 5 per update) is our choice of length, and no
learning-rate decay; FID here is the project classifier's unless Inception weights are
configured, the classifier from
`python -m cnn.main --config=configs/cnn.py --config.dataset=cifar10 --workdir=runs/cnn_cifar10`.
:cpu is MNIST at widths 16 with one D step per G step and Adam (0.5, 0.999), the paper's
setting C, at 4x its rate (8e-4) and batch 16 (see below): 3 epochs, 463 s on 2 cores, classifier
FD 23.3 (the DCGAN, WGAN and WGAN-GP presets' best: 50.6-56.3); on Fashion-MNIST 13.54 (DCGAN's
18.99, WGAN's 19.79, WGAN-GP's 29.87), BENCHMARKS.md. :test is seconds, for the tests.
"""

from configs import gan_base
from common import options


def get_config(preset: str = ""):
  c = gan_base.get_config()
  c.name = "sngan"
  c.model.arch = "resnet"
  c.model.latent_dim = 128
  c.model.g_width = 128
  c.model.d_width = 128
  c.model.d_norm = "none"
  c.model.init = "default"        # glorot uniform, as the authors' Chainer code
  c.model.spectral_norm = "d"
  c.loss.d = c.loss.g = "hinge"
  c.d_steps = 5
  c.g_optimizer.update(options.optimizer_values("adam", learning_rate=2e-4, b1=0.0, b2=0.9))
  c.d_optimizer.update(options.optimizer_values("adam", learning_rate=2e-4, b1=0.0, b2=0.9))
  c.batch_size = 64
  c.num_epochs = 40
  if preset == "cpu":
    # The paper's setting C (its Table 1: 1 D step, Adam (0.5, 0.999)) at 4x its rate and a
    # quarter of its batch, which trains furthest in 3 epochs on 2 cores (BENCHMARKS.md, "The GAN
    # toolkit on 2 CPU cores": an epoch at batch 16 costs less than at 32 or 64 here). Classifier
    # FD of 1,000 samples after epochs 1-3 on MNIST, batch 64: 104.0, 86.2, 81.6 at 2e-4; 69.3,
    # 57.5, 32.5 at 8e-4; batch 32: 79.3, 54.7 at 4e-4; 61.7, 37.4, 30.3 at 8e-4 (57.5, 42.7, 39.9
    # with cosine decay); on Fashion-MNIST at 8e-4, batch 32: 40.0, 26.2, 22.1; batch 16: 33.2,
    # 20.5, 15.5. G's EMA (0.999) did not help (FD 33.2 with it, 28.1 without: batch 64, MNIST).
    gan_base.cpu(c, width=16)
    c.d_steps = 1
    c.batch_size = 16
    c.g_optimizer.update(learning_rate=8e-4, b1=0.5, b2=0.999)
    c.d_optimizer.update(learning_rate=8e-4, b1=0.5, b2=0.999)
    c.num_epochs = 3
  if preset == "cifar10":
    c.name = "sngan_cifar10"
    c.dataset = "cifar10"
    c.model.g_width = 256
    c.model.d_width = 128
    c.num_epochs = 320
    c.classifier_workdir = "runs/cnn_cifar10"
  return gan_base.finish(c, preset, own=("cifar10",))


def get_sweep(name: str) -> list[dict]:
  """Named override sets for scripts/sweep.py, e.g.

      python scripts/sweep.py --config=configs/sngan.py:cpu --sweep=stabilizers --seeds=2

  'stabilizers': spectral norm in D (on, off) x loss (hinge; the minimax D with the
  non-saturating G) x DiffAugment (off; color,translation,cutout), 8 members, on the SNGAN CPU
  preset: which of the three makes the ResNet train. On MNIST (two seeds, BENCHMARKS.md): spectral
  norm in D (FD 23.5 with it, 32.4-45.4 without); DiffAugment cost 4.7-11.0; the loss, nothing
  established.
  """
  from common import sweeps  # pylint: disable=g-import-not-at-top
  if name != "stabilizers":
    raise sweeps.unknown_sweep(name, ("stabilizers",))
  members = []
  for sn in ("d", "none"):
    for loss, (d, g) in (("hinge", ("hinge", "hinge")),
                         ("ns", ("minimax", "non_saturating"))):
      for policy in ("", "color,translation,cutout"):
        members.append({sweeps.LABEL: f"sn={sn},loss={loss},aug={'on' if policy else 'off'}",
                        "model.spectral_norm": sn, "loss.d": d, "loss.g": g,
                        "augment.policy": policy})
  return members
