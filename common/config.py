"""Config validation: every key of a config has a rule; anything else stops before data or compile.

A rule names the allowed values in words, so the error is one line: the key and what is allowed.
"""

import dataclasses
import json
from typing import Any, Callable

import ml_collections


class ConfigError(ValueError):
  """A config key that is unknown, of the wrong type or out of range."""


@dataclasses.dataclass(frozen=True)
class Rule:
  types: tuple[type, ...]
  check: Callable[[Any], bool] = lambda v: True
  allowed: str = ""


def choice(*options) -> Rule:
  types = tuple({type(o) for o in options})
  return Rule(types, lambda v: v in options, "one of " + ", ".join(repr(o) for o in options))


def integer(lo: int = 0, hi: int | None = None) -> Rule:
  text = f"an integer >= {lo}" + (f" and <= {hi}" if hi is not None else "")
  return Rule((int,), lambda v: v >= lo and (hi is None or v <= hi), text)


def number(lo: float = 0.0, hi: float | None = None, *, open_lo: bool = False,
           open_hi: bool = False) -> Rule:
  def ok(v):
    above = v > lo if open_lo else v >= lo
    below = hi is None or (v < hi if open_hi else v <= hi)
    return above and below
  text = (f"a number {'>' if open_lo else '>='} {lo}"
          + (f" and {'<' if open_hi else '<='} {hi}" if hi is not None else ""))
  return Rule((int, float), ok, text)


TEXT = Rule((str,), allowed="a string")
FLAG = Rule((bool,), allowed="True or False")
INTS = Rule((tuple, list), lambda v: all(isinstance(i, int) and i > 0 for i in v),
            "a tuple of positive integers")


def _flatten(config, prefix=""):
  for key, value in config.items():
    path = f"{prefix}{key}"
    if isinstance(value, ml_collections.ConfigDict):
      yield from _flatten(value, path + ".")
    else:
      yield path, value


def validate(config: ml_collections.ConfigDict, rules: dict[str, Rule]) -> None:
  """Raises ConfigError naming the first key that has no rule or breaks its rule."""
  for path, value in _flatten(config):
    rule = rules.get(path)
    if rule is None:
      parent = path.rsplit(".", 1)[0] + "." if "." in path else ""
      known = sorted({k[len(parent):].split(".")[0] for k in rules if k.startswith(parent)})
      raise ConfigError(f"Unknown config key {path!r}; known keys here: {', '.join(known)}.")
    if isinstance(value, bool) and bool not in rule.types:
      ok = False
    else:
      ok = isinstance(value, rule.types) and rule.check(value)
    if not ok:
      raise ConfigError(f"config.{path}={value!r} is not allowed: use {rule.allowed}.")


def to_dict(config: ml_collections.ConfigDict) -> dict:
  """A JSON-safe plain dict (tuples become lists)."""
  return json.loads(config.to_json())


def differences(saved: dict, current: dict, ignore: tuple[str, ...] = ()) -> list[str]:
  """'key: saved -> current' for every flattened key that differs, except ignored ones."""
  flat_saved = dict(_flatten(ml_collections.ConfigDict(saved)))
  flat_now = dict(_flatten(ml_collections.ConfigDict(current)))
  out = []
  for key in sorted(set(flat_saved) | set(flat_now)):
    if key in ignore or key.split(".")[0] in ignore:
      continue
    a, b = flat_saved.get(key, "<absent>"), flat_now.get(key, "<absent>")
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
      a, b = list(a), list(b)
    if a != b:
      out.append(f"{key}: {a!r} -> {b!r}")
  return out


def load_saved(path: str, defaults: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """A run's saved config.json over `defaults`, so keys added since that run keep their defaults."""
  with open(path) as f:
    defaults.update(json.load(f))
  return defaults
