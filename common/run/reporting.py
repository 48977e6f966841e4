"""What a run shows and writes: Keras-style epoch lines, metrics.jsonl, TensorBoard, results.json.

Only process 0 writes files; every process may print (absl logging shows process 0 by default).
Files are written so that a crash (kill -9, full disk) can neither empty nor corrupt them.
"""

import contextlib
import json
import os
import secrets
import sys
import time

import jax
import numpy as np
from absl import logging
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
  """Progress inside an epoch: a bar on a terminal, a plain line every `log_every_s` seconds in
  a log file (SLURM output, `> log`), nothing when off.

  Our own over tqdm: the bar must share the line with Keras-style epoch lines and clear itself,
  and log files get whole lines, never carriage returns."""

  def __init__(self, mode: str = "auto", log_every_s: float = 30.0):
    self.bar = mode == "on" or (mode == "auto" and sys.stdout.isatty())
    self.enabled = self.bar or mode == "auto"   # whether the loop reports progress at all
    self.log_every_s = log_every_s
    self._last = 0.0

  def update(self, epoch: int, num_epochs: int, done: int, total: int, seconds: float) -> None:
    if not self.enabled or not is_writer():
      return
    eta = seconds / max(done, 1) * (total - done)
    if not self.bar:
      if seconds - self._last >= self.log_every_s and done < total:
        self._last = seconds
        print(f"Epoch {epoch}/{num_epochs} - {done}/{total} - {seconds:.0f}s - ETA {eta:.0f}s",
              flush=True)
      return
    width = 30
    filled = int(width * done / max(total, 1))
    sys.stdout.write(f"\rEpoch {epoch}/{num_epochs} - {done}/{total} "
                     f"[{'=' * filled}{'>' if filled < width else ''}{'.' * (width - filled - 1)}]"
                     f" - ETA {eta:.0f}s ")
    sys.stdout.flush()

  def clear(self) -> None:
    self._last = 0.0
    if self.bar and is_writer():
      sys.stdout.write("\r\033[K")
      sys.stdout.flush()


def print_line(text: str) -> None:
  if is_writer():
    print(text, flush=True)


class WriteError(OSError):
  """A workdir file that could not be written (disk full, permissions); one line says what to do."""


class Writer:
  """metrics.jsonl (one object per epoch) and TensorBoard events (tensorboardX) in the workdir.

  The jsonl file is our own over a library's logger: none we know appends crash-safely and reads
  back tolerantly, which exact resume needs.

  A crash can't empty or corrupt metrics.jsonl: on a local filesystem each epoch's line is
  appended, flushed and fsynced; cloud storage has no append, so there the file is rewritten whole
  under a temp name and renamed (cheap for one line per epoch). Reading drops a partial or corrupt
  line with a warning, and resuming truncates the file with an atomic rewrite.
  """

  def __init__(self, workdir: str, config=None):
    self.workdir = workdir
    self.path = epath.Path(workdir) / "metrics.jsonl"
    self._rows: list[dict] = []
    self._tail_checked = False
    self._tb = self._wandb = None
    if is_writer():
      epath.Path(workdir).mkdir(parents=True, exist_ok=True)
      from tensorboardX import SummaryWriter  # pylint: disable=g-import-not-at-top
      self._tb = SummaryWriter(str(epath.Path(workdir) / "tensorboard"))
      if config is not None and config.get("wandb_project"):
        self._wandb = wandb_run(workdir, config)

  def history(self, up_to_epoch: int, recovered: list[dict] | None = None) -> list[dict]:
    """Epoch records already written, truncated to those a checkpoint covers (exact resume).

    `recovered`: the epoch records kept in the checkpoint's meta; epochs the file lacks (lost or
    cut short) are taken from them, with a warning. The file is rewritten only if this changed it.
    """
    rows, dropped = read_records(self.path)
    by_epoch = {r["epoch"]: r for r in rows if r["epoch"] <= up_to_epoch}
    found = [r for r in recovered or () if r.get("epoch", 0) <= up_to_epoch
             and r.get("epoch") not in by_epoch]
    if found:
      logging.warning("%s lacked epochs %s; rebuilt them from the checkpoint.", self.path,
                      _ranges([r["epoch"] for r in found]))
      by_epoch.update({r["epoch"]: r for r in found})
    self._rows = [by_epoch[e] for e in sorted(by_epoch)]
    lost = sorted(set(range(1, up_to_epoch + 1)) - set(by_epoch))
    if lost:
      logging.warning("%s has no record of epochs %s (lost before this resume).", self.path,
                      _ranges(lost))
    if dropped or found or len(self._rows) != len(rows):
      self._rewrite()
    return list(self._rows)

  def _rewrite(self) -> None:
    if is_writer():
      atomic_write_text(self.path, "".join(json.dumps(r) + "\n" for r in self._rows))

  def _append(self, record: dict) -> None:
    line = json.dumps(record) + "\n"
    try:
      with open(self.path, "a+b") as f:
        if not self._tail_checked and f.seek(0, os.SEEK_END) > 0:
          f.seek(-1, os.SEEK_END)
          if f.read(1) != b"\n":  # a line cut short by a crash: keep ours on its own line
            line = "\n" + line
        f.write(line.encode())
        f.flush()
        os.fsync(f.fileno())
    except OSError as e:
      raise WriteError(_write_failure(self.path, e)) from e
    self._tail_checked = True

  def write_epoch(self, record: dict) -> None:
    if not is_writer():
      return
    self._rows.append(record)
    if is_local(self.path):
      self._append(record)
    else:
      self._rewrite()
    scalars = {k: v for k, v in record.items()
               if k not in ("epoch", "step") and isinstance(v, (int, float))}
    for key, value in scalars.items():
      self._tb.add_scalar(key, value, record["step"])
    self._tb.flush()
    if self._wandb is not None:
      self._wandb.log({"epoch": record["epoch"], **scalars}, step=record["step"])

  def write_images(self, tag: str, images_nhwc: np.ndarray, step: int) -> None:
    if is_writer():
      self._tb.add_images(tag, images_nhwc, step, dataformats="NHWC")
      self._tb.flush()
      if self._wandb is not None:
        import wandb  # pylint: disable=g-import-not-at-top
        from common.run import plots  # pylint: disable=g-import-not-at-top
        rows = max(1, int(np.sqrt(len(images_nhwc))))
        self._wandb.log({tag: wandb.Image(plots.grid(images_nhwc, rows))}, step=step)

  def close(self) -> None:
    if self._tb is not None:
      self._tb.close()
    if self._wandb is not None:
      self._wandb.finish()


def wandb_run(workdir: str, config):
  """The Weights & Biases run of this workdir: one id kept in WORKDIR/wandb_id.txt, so a resumed
  run goes on logging into the same W&B run."""
  try:
    import wandb  # pylint: disable=g-import-not-at-top
  except ImportError:
    raise WriteError("config.wandb_project is set but wandb is not installed: run "
                     "pip install -e '.[wandb]' (or set --config.wandb_project='').") from None
  id_file = epath.Path(workdir) / "wandb_id.txt"
  run_id = id_file.read_text().strip() if id_file.exists() else secrets.token_hex(8)
  atomic_write_text(id_file, run_id)
  return wandb.init(project=config.wandb_project, name=config.name, id=run_id, resume="allow",
                    dir=workdir if is_local(workdir) else None,
                    config=json.loads(config.to_json()))


def read_json(workdir: str, name: str) -> dict | None:
  """A JSON file of the workdir, or None if there is none."""
  path = epath.Path(workdir) / name
  return json.loads(path.read_text()) if path.exists() else None


def read_records(path) -> tuple[list[dict], int]:
  """(epoch records of a metrics.jsonl, how many lines were dropped as partial or corrupt)."""
  path = epath.Path(path)
  if not path.exists():
    return [], 0
  rows, dropped = [], 0
  for number, line in enumerate(path.read_bytes().decode("utf-8", "replace").splitlines(), 1):
    if not line.strip():
      continue
    try:
      row = json.loads(line)
    except ValueError:
      row = None
    if isinstance(row, dict) and isinstance(row.get("epoch"), int):
      rows.append(row)
    else:
      dropped += 1
      logging.warning("%s line %d is partial or corrupt (a crash while writing it?); dropped it: "
                      "%.80s", path, number, line)
  return rows, dropped


def write_json(workdir: str, name: str, obj: dict) -> None:
  if not is_writer():
    return
  path = epath.Path(workdir) / name
  path.parent.mkdir(parents=True, exist_ok=True)
  atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True))


def atomic_write_text(path, text: str) -> None:
  """Writes through a temp name unique to this process, fsynced, renamed over `path`.

  A crash leaves either the old file or the new one, never a partial one; WriteError on failure.
  """
  path = epath.Path(path)
  tmp = path.parent / f".{path.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}"
  try:
    if is_local(path):
      with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
      os.replace(tmp, path)
      _fsync_dir(path.parent)
    else:
      tmp.write_text(text)
      tmp.replace(path)
  except OSError as e:
    with contextlib.suppress(OSError):
      tmp.unlink()
    raise WriteError(_write_failure(path, e)) from e


def _write_failure(path, e: OSError) -> str:
  return (f"Could not write {path} ({e.strerror or e}): free space or fix permissions, then rerun "
          "the same command to resume.")


def _fsync_dir(directory) -> None:
  """Makes a rename in `directory` durable; some filesystems can't open a folder, which is fine."""
  try:
    fd = os.open(directory, os.O_RDONLY)
  except OSError:
    return
  try:
    os.fsync(fd)
  except OSError:
    pass
  finally:
    os.close(fd)


def is_local(path) -> bool:
  """A local path (not gs:// or another remote filesystem)."""
  return "://" not in str(path)


def _ranges(epochs: list[int]) -> str:
  """'1-3, 7' for [1, 2, 3, 7]."""
  parts, start = [], None
  for i, e in enumerate(epochs):
    start = e if start is None else start
    if i + 1 == len(epochs) or epochs[i + 1] != e + 1:
      parts.append(str(e) if start == e else f"{start}-{e}")
      start = None
  return ", ".join(parts)


class Timer:
  def __init__(self):
    self.start = time.perf_counter()

  def __call__(self) -> float:
    return time.perf_counter() - self.start
