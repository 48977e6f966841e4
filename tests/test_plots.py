"""Training-curve figures: axis labels and whole-epoch ticks, read back from matplotlib."""

import matplotlib.pyplot as plt
import numpy as np

from common.run import plots

HISTORY = [{"epoch": e, "d_loss": 1.4 - 0.1 * e, "g_loss": 0.7 + 0.2 * e} for e in (1, 2, 3)]


def test_gan_losses_panel_is_labelled_loss_with_whole_epoch_ticks():
  fig = plots.curves_figure(HISTORY, [("d_loss", "g_loss")], "gan", ylabels=["loss"])
  (ax,) = fig.axes
  assert ax.get_ylabel() == "loss"
  ticks = ax.get_xticks()
  assert len(ticks) >= 2 and np.all(ticks == np.round(ticks)), ticks
  assert [line.get_label() for line in ax.get_lines()] == ["d_loss", "g_loss"]
  plt.close(fig)


def test_panels_default_to_their_first_metric_name():
  history = [dict(r, loss=1.0 / r["epoch"], val_loss=1.5 / r["epoch"]) for r in HISTORY]
  fig = plots.curves_figure(history, [("loss", "val_loss"), ("d_loss",)], ylabels=[None, "D"])
  assert [ax.get_ylabel() for ax in fig.axes] == ["loss", "D"]
  plt.close(fig)
  fig = plots.curves_figure(history, [("loss", "val_loss"), ("d_loss",)])
  assert [ax.get_ylabel() for ax in fig.axes] == ["loss", "d_loss"]
  plt.close(fig)


def test_training_curves_writes_a_png(tmp_path):
  path = tmp_path / "sub" / "losses.png"
  plots.training_curves(HISTORY, str(path), [("d_loss", "g_loss")], ylabels=["loss"])
  assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
