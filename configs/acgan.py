"""ACGAN (Odena et al. 2017), the Keras MNIST example's architecture, as the course runs it.

    python -m gan.main --config=configs/acgan.py            # full size, for an accelerator
    python -m gan.main --config=configs/acgan.py:cpu        # narrower, < 10 minutes on 2 CPU cores
    python -m gan.sample --workdir=runs/acgan --num=100 --label=6 --out=sixes.npz --png=sixes.png
    python -m gan.main --config=configs/acgan.py:cifar10    # the paper's CIFAR-10 setup (GPU/TPU)

G: z ~ U[-1, 1]^100 times a learned class embedding -> Dense 1024 -> Dense 7x7x128 -> upsample ->
Conv 5x5 256 -> upsample -> Conv 5x5 128 -> Conv 2x2 1, tanh. D: Conv 3x3 32 (stride 2), 64, 128
(stride 2), 256, each with LeakyReLU 0.2 and Dropout 0.3; a real/fake head and a 10-class head.
Batch 100, Adam 2e-4, beta1 0.5, auxiliary loss weight 1 (for G; for D, as the Keras example:
2 on real images, 0 on fakes), real targets 0.95. On a GPU, add --config.dtype=bfloat16 (4x faster).

:cifar10 follows Odena et al.'s CIFAR-10 model (their appendix): the label as a one-hot vector
beside z ~ U[-1, 1]^100 (110 inputs), G a dense layer to 4x4x384 then transposed convolutions to
192 and 96 channels and 3 (tanh) with batch norm and ReLU; D strided convolutions with LeakyReLU
0.2, batch norm and dropout 0.5, a real/fake head and a 10-class head; class loss weight 1 for D
(real and generated) and G; Adam 2e-4, beta1 0.5, batch 100. Differences from the paper, kept
so that one DCGAN body serves: 3 strided D layers of 64, 128, 256 channels (the paper: 6 layers,
16 to 512, alternating strides 2 and 1), and 4x4 transposed-convolution kernels (the paper: 5x5).
"""

from configs import gan_base
from common import options


def get_config(preset: str = ""):
  c = gan_base.get_config()
  c.name = "acgan"
  c.model.arch = "keras_acgan"
  c.model.latent_dim = 100
  c.model.latent_dist = "uniform"
  c.model.conditioning = "multiply"
  c.model.aux_classifier = True
  c.model.g_width = 128
  c.model.g_hidden = 1024
  c.model.d_width = 32
  c.model.d_norm = "none"
  c.model.d_dropout = 0.3
  c.model.init = "default"
  # The Keras example's weighting: D's class head learns from real images only (weight 2, so the
  # auxiliary loss keeps its total weight), never from fakes, and real targets are 0.95. With D also
  # classifying fakes (weight 1 each), a full-length GPU run drew 7s for label 2 and 9s for label 6:
  # D learned the generator's mistakes as the classes (conditional accuracy 0.80 after 31 epochs).
  c.loss.aux_weight_real = 2.0
  c.loss.aux_weight_fake = 0.0
  c.loss.aux_weight_g = 1.0
  c.loss.label_smoothing = 0.05
  c.g_optimizer.update(options.optimizer_values("adam", learning_rate=2e-4, b1=0.5))
  c.d_optimizer.update(options.optimizer_values("adam", learning_rate=2e-4, b1=0.5))
  c.batch_size = 100
  c.num_epochs = 50
  if preset == "cpu":
    # Narrower; a generator this narrow, fed the Keras embedding product, starts near-constant and
    # ignores the label (measured: g_aux stayed at ln 10), so it gets the label as a one-hot
    # vector beside z and He-initialized kernels.
    c.name = "acgan_cpu"
    c.model.g_width = 16
    c.model.g_hidden = 256
    c.model.d_width = 16
    c.model.conditioning = "concat"
    c.model.init = "he"
    c.num_epochs = 3
  if preset == "cifar10":
    c.name = "acgan_cifar10"
    c.dataset = "cifar10"
    c.model.arch = "dcgan"
    c.model.conditioning = "concat"
    c.model.g_width = 96             # G: 4x4x384 -> 8x8x192 -> 16x16x96 -> 32x32x3
    c.model.d_width = 64
    c.model.d_norm = "batch"
    c.model.d_dropout = 0.5
    c.model.init = "dcgan"
    c.loss.aux_weight_real = c.loss.aux_weight_fake = c.loss.aux_weight_g = 1.0
    c.loss.label_smoothing = 0.0
    c.classifier_workdir = "runs/cnn_cifar10"
  return gan_base.finish(c, preset, own=("cifar10",))


def get_sweep(name: str) -> list[dict]:
  """Named override sets for scripts/sweep.py, e.g.

      python scripts/sweep.py --config=configs/acgan.py:cpu --sweep=ablation --seeds=2
  """
  from common import sweeps  # pylint: disable=g-import-not-at-top
  if name == "ablation":  # 2 x 2 x 2: auxiliary weight, one-sided label smoothing, D dropout
    members = []
    for m in sweeps.product(aux=[0.2, 1.0], smooth=[0.0, 0.1], dropout=[0.0, 0.3]):
      members.append({
          sweeps.LABEL: f"aux={m['aux']:g},smooth={m['smooth']:g},dropout={m['dropout']:g}",
          "loss.aux_weight_real": m["aux"], "loss.aux_weight_fake": m["aux"],
          "loss.aux_weight_g": m["aux"], "loss.label_smoothing": m["smooth"],
          "model.d_dropout": m["dropout"]})
    return members
  if name == "tiny":  # three quick members, for the tests
    return sweeps.product(**{"loss.label_smoothing": [0.0, 0.1, 0.2]})
  raise sweeps.unknown_sweep(name, ("ablation", "tiny"))
