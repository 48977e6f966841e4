"""Config validation: bad options, types and ranges stop with one line, before data or compile."""

import ml_collections
import pytest

from common import config as cfg
from cnn import options as cnn_options
from conftest import REPO, load_config, run_module


def test_every_shipped_cnn_config_validates():
  for name in ("cnn_seed", "cnn", "cnn1d"):
    for preset in ("", "cpu", "test"):
      cnn_options.validate(load_config(name, preset))


@pytest.mark.parametrize("key,value,expected", [
    ("batch_size", 0, "config.batch_size=0 is not allowed: use an integer >= 1"),
    ("validation_split", 1.5, "config.validation_split=1.5 is not allowed"),
    ("optimizer.name", "adagrad", "one of 'adam', 'adamw', 'adadelta', 'rmsprop', 'sgd'"),
    ("dtype", "float16", "one of 'float32', 'bfloat16'"),
    ("model.name", "resnet", "config.model.name='resnet' is not allowed"),
])
def test_out_of_range_values_name_the_key(key, value, expected):
  c = load_config("cnn_seed", "test", **{key: value})
  with pytest.raises(cfg.ConfigError, match=expected.replace("(", r"\(").replace(")", r"\)")):
    cnn_options.validate(c)


def test_unknown_key_in_a_config_file_is_rejected():
  c = load_config("cnn_seed", "test")
  c.learning_rat = 0.1
  with pytest.raises(cfg.ConfigError, match="Unknown config option 'learning_rat'"):
    cnn_options.validate(c)


def test_wrong_type_is_rejected():
  # ConfigDict's own type check stops this on the command line; a config file can still do it.
  c = ml_collections.ConfigDict({**load_config("cnn_seed", "test").to_dict(), "num_epochs": "ten"})
  with pytest.raises(cfg.ConfigError, match="config.num_epochs='ten' is not allowed"):
    cnn_options.validate(c)


def test_config_differences_list_changed_fields():
  a = cfg.to_dict(load_config("cnn_seed", "test"))
  b = cfg.to_dict(load_config("cnn_seed", "test", batch_size=64, num_epochs=9))
  assert cfg.differences(a, b, ignore=("num_epochs",)) == ["batch_size: 128 -> 64"]


@pytest.mark.parametrize("override,expected", [
    ("--config.batch_sise=3", "unknown config option"),
    ("--config.batch_size=three", "invalid literal for int()"),
    ("--config.batch_size=-5", "config.batch_size=-5 is not allowed: use an integer >= 1"),
])
def test_command_line_errors_are_one_line(tmp_path, override, expected):
  r = run_module(["-m", "cnn.main", "--config=configs/cnn_seed.py:test",
                  f"--workdir={tmp_path}/w", override], timeout=120)
  assert r.returncode != 0
  assert "Traceback" not in r.stderr
  errors = [line for line in r.stderr.splitlines() if "rror" in line]
  assert len(errors) == 1 and expected in errors[0], r.stderr[-2000:]
  assert not (tmp_path / "w" / "checkpoints").exists()


def test_unknown_preset_is_rejected():
  r = run_module(["-m", "cnn.main", "--config=configs/cnn_seed.py:gpu"], timeout=120)
  assert r.returncode != 0 and "Unknown preset 'gpu'" in r.stderr and "Traceback" not in r.stderr


def test_key_declarations_match_what_the_library_builds():
  from cnn import models  # pylint: disable=g-import-not-at-top
  from gan import options as gan_options  # pylint: disable=g-import-not-at-top
  from gan import losses  # pylint: disable=g-import-not-at-top
  from gan import models as gan_models  # pylint: disable=g-import-not-at-top
  assert set(cnn_options.MODELS) == set(models.MODELS)
  assert set(gan_options.ARCHS) == set(gan_models.ARCHITECTURES)
  assert set(gan_options.G_LOSSES) == set(losses.G_LOSSES)
  for options in (cnn_options.OPTIONS, gan_options.OPTIONS):  # every default obeys its own rule
    cfg.validate(cfg.defaults(options), options)


def test_a_config_saved_before_the_key_declarations_restores_over_defaults():
  """tests/data holds the config.json an acgan:cpu run wrote before options were declared once: it has
  model.num_classes (now read from the dataset); here it also lacks g_ema_decay (added later)."""
  import json  # pylint: disable=g-import-not-at-top
  import pathlib  # pylint: disable=g-import-not-at-top
  from gan import options as gan_options  # pylint: disable=g-import-not-at-top
  saved = json.loads((pathlib.Path(__file__).parent / "data" /
                      "acgan_cpu_config_before_key_declarations.json").read_text())
  del saved["g_ema_decay"]
  config = cfg.over_defaults(saved, gan_options.OPTIONS, gan_options.RETIRED)
  gan_options.validate(config)
  assert config.g_ema_decay == 0.0 and "num_classes" not in config.model
  assert config.model.g_width == 16 and config.g_optimizer.b1 == 0.5
  now = load_config("acgan", "cpu")
  assert cfg.differences(cfg.to_dict(config), cfg.to_dict(now)) == []
  with pytest.raises(cfg.ConfigError, match="not options of this kind of run"):
    cfg.over_defaults(saved, cnn_options.OPTIONS, cnn_options.RETIRED)


def test_keys_flag_lists_every_key_with_value_default_and_description():
  r = run_module(["-m", "gan.main", "--config=configs/acgan.py:cpu", "--config.num_epochs=7",
                  "--options"], timeout=120)
  assert r.returncode == 0, r.stderr[-2000:]
  from gan import options as gan_options  # pylint: disable=g-import-not-at-top
  lines = r.stdout.splitlines()
  assert len(lines) == len(gan_options.OPTIONS) + 1
  epochs = next(l for l in lines if l.startswith("num_epochs "))
  assert "7 [25]  (r)  - epochs to train" in epochs


def test_restore_reads_a_workdir_only_through_epath(tfds_dir, tmp_path, monkeypatch):
  """Workdirs may be gs://: restore_run must not touch one with open() or os.path."""
  import builtins  # pylint: disable=g-import-not-at-top
  import os  # pylint: disable=g-import-not-at-top
  import sys  # pylint: disable=g-import-not-at-top
  from cnn import train as cnn_train  # pylint: disable=g-import-not-at-top
  from common import parallel  # pylint: disable=g-import-not-at-top
  workdir = str(tmp_path / "run")
  cnn_train.train_and_evaluate(load_config("cnn_seed", num_epochs=1), workdir)
  touched = []

  ours = tuple(str(REPO / pkg) for pkg in ("common", "cnn", "gan"))

  def spy(fn):  # records calls on the workdir made from this project's code (epath's are fine)
    def wrapped(path, *args, **kwargs):
      caller = sys._getframe(1).f_code.co_filename  # pylint: disable=protected-access
      if workdir in str(path) and caller.startswith(ours):
        touched.append((fn.__name__, str(path), caller))
      return fn(path, *args, **kwargs)
    return wrapped

  for module, name in ((builtins, "open"), (os.path, "exists"), (os.path, "isdir"),
                       (os.path, "isfile"), (os, "listdir")):
    monkeypatch.setattr(module, name, spy(getattr(module, name)))
  epath_calls = []
  from etils import epath  # pylint: disable=g-import-not-at-top
  original = epath.Path.read_text
  monkeypatch.setattr(epath.Path, "read_text",
                      lambda self, *a, **k: epath_calls.append(str(self)) or original(self, *a, **k))
  run, _ = cnn_train.restore_classifier(workdir, parallel.make_mesh())
  monkeypatch.undo()
  assert run.step == 16
  assert any(p.endswith("config.json") for p in epath_calls)
  assert not touched, touched
