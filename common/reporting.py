"""What a run shows and writes: Keras-style epoch lines, metrics.jsonl, TensorBoard, results.json.

Only process 0 writes files; every process may print (absl logging shows process 0 by default).
"""

import json
import sys
import time

import jax
import numpy as np
from etils import epath


def is_writer() -> bool:
  return jax.process_index() == 0


def _fmt(value) -> str:
  return f"{value:.4f}" if isinstance(value, float) else str(value)


def keras_line(epoch: int, num_epochs: int, steps: int, total_steps: int, seconds: float,
               metrics: dict) -> str:
  """`Epoch 3/50 - 375/375 - 1.2s 3ms/step - loss: 0.3012 - accuracy: 0.9102 - val_loss: ...`."""
  per_step = seconds / max(steps, 1)
  per_step_text = f"{per_step * 1e3:.0f}ms/step" if per_step >= 1e-3 else f"{per_step * 1e6:.0f}us/step"
  parts = [f"Epoch {epoch}/{num_epochs}", f"{steps}/{total_steps}", f"{seconds:.1f}s {per_step_text}"]
  parts += [f"{k}: {_fmt(v)}" for k, v in metrics.items()]
  return " - ".join(parts)


class Progress:
  """A progress bar inside an epoch, only when writing to a terminal."""

  def __init__(self, enabled: bool | None = None):
    self.enabled = sys.stdout.isatty() if enabled is None else enabled

  def update(self, epoch: int, num_epochs: int, done: int, total: int, seconds: float) -> None:
    if not self.enabled or not is_writer():
      return
    width = 30
    filled = int(width * done / max(total, 1))
    eta = seconds / max(done, 1) * (total - done)
    sys.stdout.write(f"\rEpoch {epoch}/{num_epochs} - {done}/{total} "
                     f"[{'=' * filled}{'>' if filled < width else ''}{'.' * (width - filled - 1)}]"
                     f" - ETA {eta:.0f}s ")
    sys.stdout.flush()

  def clear(self) -> None:
    if self.enabled and is_writer():
      sys.stdout.write("\r\033[K")
      sys.stdout.flush()


def print_line(text: str) -> None:
  if is_writer():
    print(text, flush=True)


class Writer:
  """metrics.jsonl (one object per epoch) and TensorBoard events in the workdir.

  Files go through etils.epath, so a gs:// workdir works; metrics.jsonl is rewritten whole each
  epoch (cloud storage has no append), which is cheap for one line per epoch.
  """

  def __init__(self, workdir: str):
    self.workdir = workdir
    self.path = epath.Path(workdir) / "metrics.jsonl"
    self._rows: list[dict] = []
    self._tb = None
    if is_writer():
      epath.Path(workdir).mkdir(parents=True, exist_ok=True)
      from tensorboardX import SummaryWriter  # pylint: disable=g-import-not-at-top
      self._tb = SummaryWriter(str(epath.Path(workdir) / "tensorboard"))

  def history(self, up_to_epoch: int) -> list[dict]:
    """Epoch records already written, truncated to those a checkpoint covers (exact resume)."""
    if not self.path.exists():
      return []
    rows = [json.loads(line) for line in self.path.read_text().splitlines() if line.strip()]
    self._rows = [r for r in rows if r["epoch"] <= up_to_epoch]
    self._save()
    return list(self._rows)

  def _save(self) -> None:
    if is_writer():
      self.path.write_text("".join(json.dumps(r) + "\n" for r in self._rows))

  def write_epoch(self, record: dict) -> None:
    if not is_writer():
      return
    self._rows.append(record)
    self._save()
    for key, value in record.items():
      if key not in ("epoch", "step") and isinstance(value, (int, float)):
        self._tb.add_scalar(key, value, record["step"])
    self._tb.flush()

  def write_images(self, tag: str, images_nhwc: np.ndarray, step: int) -> None:
    if is_writer():
      self._tb.add_images(tag, images_nhwc, step, dataformats="NHWC")
      self._tb.flush()

  def close(self) -> None:
    if self._tb is not None:
      self._tb.close()


def read_json(workdir: str, name: str) -> dict | None:
  """A JSON file of the workdir, or None if there is none."""
  path = epath.Path(workdir) / name
  return json.loads(path.read_text()) if path.exists() else None


def write_json(workdir: str, name: str, obj: dict) -> None:
  if not is_writer():
    return
  path = epath.Path(workdir) / name
  path.parent.mkdir(parents=True, exist_ok=True)
  tmp = path.parent / (name + ".tmp")
  tmp.write_text(json.dumps(obj, indent=2, sort_keys=True))
  tmp.replace(path)


class Timer:
  def __init__(self):
    self.start = time.perf_counter()

  def __call__(self) -> float:
    return time.perf_counter() - self.start
