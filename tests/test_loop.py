"""The shared loop with a toy task: NaN handling keeps the last good checkpoint."""

import dataclasses
import os
import signal

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from common import config as cfg
from common import options
from common.run import loop
from common import parallel
from common.data import shards
from common.data.datasets import HostSplit
from conftest import latest_params


def _toy(nan_from_step: int):
  tx = optax.sgd(0.1)

  def init(key):
    params = {"w": jnp.zeros((3,))}
    return loop.TrainState(step=jnp.int32(0), key=key, params=params, opt_state=tx.init(params),
                           model_state={})

  def train_step(state, batch, key):
    x = batch["image"][0].astype(jnp.float32)
    grads = {"w": state.params["w"] - jnp.mean(x, 0)}  # pulls w to the data mean
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    loss = jnp.where(state.step >= nan_from_step, jnp.nan, jnp.sum(grads["w"] ** 2))
    return (state.replace(params=optax.apply_updates(state.params, updates), opt_state=opt_state),
            {"loss": loss})

  return loop.Task(init=init, train_step=train_step)


def _splits(mesh):
  x = np.random.RandomState(0).randint(0, 255, (64, 3)).astype(np.uint8)
  return {"train": shards.to_device(mesh, HostSplit(x, np.zeros(64, np.int32), 64))}


def test_nan_stops_naming_the_step_and_keeps_the_last_checkpoint(tmp_path):
  mesh = parallel.make_mesh()
  c = cfg.defaults(options.RUN)
  c.batch_size, c.num_epochs, c.steps_per_call = 8, 5, 3  # 8 steps per epoch
  with pytest.raises(loop.NonFiniteError, match="Non-finite loss or metric at step 19;.*step 16"):
    loop.run(c, str(tmp_path), _toy(nan_from_step=19), _splits(mesh), mesh)
  state, step = latest_params(str(tmp_path))
  assert step == 16 and np.all(np.isfinite(state["params"]["w"]))
  with pytest.raises(loop.NonFiniteError, match="at step 3; stopped. No checkpoint was saved "
                     "before it; lower"):
    loop.run(c, str(tmp_path / "early"), _toy(nan_from_step=3), _splits(mesh), mesh)


def test_toy_run_finishes_and_logs(tmp_path):
  mesh = parallel.make_mesh()
  c = cfg.defaults(options.RUN)
  c.batch_size, c.num_epochs = 8, 3
  state, r = loop.run(c, str(tmp_path), _toy(nan_from_step=10**9), _splits(mesh), mesh)
  assert int(state.step) == 24
  first = float((tmp_path / "metrics.jsonl").read_text().splitlines()[0].split('"loss": ')[1].split(",")[0])
  assert r["final_epoch"]["loss"] < 0.1 * first


def test_sigterm_during_epoch_end_saves_once_and_resumes(tmp_path):
  """A signal that lands while the epoch-end checkpoint is written must not save that step twice."""
  mesh = parallel.make_mesh()
  c = cfg.defaults(options.RUN)
  c.batch_size, c.num_epochs = 8, 3
  task = _toy(nan_from_step=10**9)
  task = dataclasses.replace(task, on_epoch_end=lambda *_: os.kill(os.getpid(), signal.SIGTERM))
  _, r = loop.run(c, str(tmp_path), task, _splits(mesh), mesh)
  assert r["preempted"] and r["step"] == 8
  task = dataclasses.replace(task, on_epoch_end=None)
  state, r = loop.run(c, str(tmp_path), task, _splits(mesh), mesh)
  assert not r["preempted"] and int(state.step) == 24
