"""Pictures written to the workdir: training curves (one panel per metric) and image grids."""

from typing import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top,wrong-import-position
from matplotlib import ticker  # pylint: disable=g-import-not-at-top,wrong-import-position
import numpy as np  # pylint: disable=g-import-not-at-top,wrong-import-position
from etils import epath  # pylint: disable=g-import-not-at-top,wrong-import-position


def _save(fig, path: str) -> None:
  """Through etils.epath, so gs:// paths work; makes the folder."""
  path = epath.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  with path.open("wb") as f:
    fig.savefig(f, format="png", dpi=100)
  plt.close(fig)


def training_curves(history: list[dict], path: str, panels: list[tuple[str, ...]],
                    title: str = "", ylabels: Sequence[str | None] | None = None) -> None:
  """One panel per tuple of metric names, each drawn against the epoch (the course's Figure 3)."""
  _save(curves_figure(history, panels, title, ylabels), path)


def curves_figure(history: list[dict], panels: list[tuple[str, ...]], title: str = "",
                  ylabels: Sequence[str | None] | None = None):
  """The figure of training_curves: panel i's y axis is ylabels[i], or its first metric's name
  when that is None or ylabels is not given; the x axis shows whole epochs only."""
  epochs = [r["epoch"] for r in history]
  fig, axes = plt.subplots(len(panels), 1, figsize=(6, 3.2 * len(panels)), sharex=True,
                           squeeze=False)
  for ax, names, ylabel in zip(axes[:, 0], panels, ylabels or [None] * len(panels), strict=True):
    for name in names:
      values = [r.get(name) for r in history]
      if any(v is not None for v in values):
        label = ("validation " + name[4:]) if name.startswith("val_") else name
        ax.plot(epochs, [np.nan if v is None else v for v in values], label=label)
    ax.set_ylabel(ylabel or names[0])
    ax.xaxis.set_major_locator(ticker.MaxNLocator(integer=True))
    ax.grid(alpha=0.3)
    ax.legend()
  axes[-1, 0].set_xlabel("epoch")
  if title:
    axes[0, 0].set_title(title)
  fig.tight_layout()
  return fig


def grid(images: np.ndarray, rows: int) -> np.ndarray:
  """[N, H, W, C] -> one [rows*H, cols*W, C] mosaic, row-major."""
  n, h, w, c = images.shape
  cols = -(-n // rows)
  padded = np.zeros((rows * cols, h, w, c), images.dtype)
  padded[:n] = images
  return padded.reshape(rows, cols, h, w, c).transpose(0, 2, 1, 3, 4).reshape(rows * h, cols * w, c)


def save_grid(images_uint8: np.ndarray, path: str, rows: int, title: str = "",
              row_labels: list[str] | None = None) -> None:
  """Saves a grid of uint8 images [N, H, W, C] as a PNG."""
  mosaic = grid(images_uint8, rows)
  fig, ax = plt.subplots(figsize=(mosaic.shape[1] / 40 + 1, mosaic.shape[0] / 40 + 0.6))
  cmap = "gray" if mosaic.shape[-1] == 1 else None
  ax.imshow(mosaic[..., 0] if mosaic.shape[-1] == 1 else mosaic, cmap=cmap, vmin=0, vmax=255)
  ax.set_xticks([])
  if row_labels:
    h = images_uint8.shape[1]
    ax.set_yticks([h * (i + 0.5) for i in range(rows)], row_labels)
  else:
    ax.set_yticks([])
  if title:
    ax.set_title(title)
  fig.tight_layout()
  _save(fig, path)
