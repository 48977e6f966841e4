"""Config validation: bad keys, types and ranges stop with one line, before data or compile."""

import ml_collections
import pytest

from common import config as cfg
from cnn import keys as cnn_keys
from conftest import load_config, run_module


def test_every_shipped_cnn_config_validates():
  for name in ("cnn_seed", "cnn", "cnn1d"):
    for preset in ("", "cpu", "test"):
      cnn_keys.validate(load_config(name, preset))


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
    cnn_keys.validate(c)


def test_unknown_key_in_a_config_file_is_rejected():
  c = load_config("cnn_seed", "test")
  c.learning_rat = 0.1
  with pytest.raises(cfg.ConfigError, match="Unknown config key 'learning_rat'"):
    cnn_keys.validate(c)


def test_wrong_type_is_rejected():
  # ConfigDict's own type check stops this on the command line; a config file can still do it.
  c = ml_collections.ConfigDict({**load_config("cnn_seed", "test").to_dict(), "num_epochs": "ten"})
  with pytest.raises(cfg.ConfigError, match="config.num_epochs='ten' is not allowed"):
    cnn_keys.validate(c)


def test_config_differences_list_changed_fields():
  a = cfg.to_dict(load_config("cnn_seed", "test"))
  b = cfg.to_dict(load_config("cnn_seed", "test", batch_size=64, num_epochs=9))
  assert cfg.differences(a, b, ignore=("num_epochs",)) == ["batch_size: 128 -> 64"]


@pytest.mark.parametrize("override,expected", [
    ("--config.batch_sise=3", "unknown config key"),
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
