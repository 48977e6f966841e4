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
    c.num_epochs = 25  # 8 epochs (~100 s) gave classifier score 6.2
  return gan_base.finish(c, preset)


def get_sweep(name: str) -> list[dict]:
  """Named override sets for scripts/sweep.py, e.g.

      python scripts/sweep.py --config=configs/gan.py:cpu --sweep=losses --seeds=3

  'losses', in the spirit of Lucic et al. 2018 ("Are GANs Created Equal?"): the same MLP generator
  and discriminator (no normalization: the MLP has none, and WGAN-GP forbids batch norm) trained
  with the minimax loss, the non-saturating loss, WGAN (weight clipping, RMSProp) and WGAN-GP,
  each with its paper's optimizer and critic steps. Every member sets the same options.
  """
  from common import sweeps  # pylint: disable=g-import-not-at-top
  if name != "losses":
    raise sweeps.unknown_sweep(name, ("losses",))

  def member(label, d, g, clip=0.0, gp=0.0, d_steps=1, opt="adam", lr=2e-4, b1=0.5, b2=0.999,
             rho=0.9):
    m = {sweeps.LABEL: label, "loss.d": d, "loss.g": g, "loss.clip": clip,
         "loss.gp_weight": gp, "d_steps": d_steps, "model.d_norm": "none"}
    for player in ("g_optimizer", "d_optimizer"):
      m.update({f"{player}.name": opt, f"{player}.learning_rate": lr, f"{player}.b1": b1,
                f"{player}.b2": b2, f"{player}.rho": rho})
    return m

  return [
      member("minimax", "minimax", "minimax"),
      member("non_saturating", "minimax", "non_saturating"),
      member("wgan", "wasserstein", "wasserstein", clip=0.01, d_steps=5, opt="rmsprop", lr=5e-5,
             rho=0.99),
      member("wgan_gp", "wasserstein", "wasserstein", gp=10.0, d_steps=5, lr=1e-4, b2=0.9),
  ]
