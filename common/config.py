"""Config options, each declared once: default, validation rule, whether it may change on resume, doc.

An owner (common for the loop's and the data's options, cnn and gan for theirs) declares a dict of
dotted paths to `Option`s. Everything else is derived from it: the default `ConfigDict` that a
config file starts from, validation with one-line errors, the options a resumed run may change, the
listing `--options` prints, and the reading of a saved config.json over today's defaults.

This module imports nothing heavier than ml_collections, so config files can import the owners'
option modules without starting JAX.
"""

import dataclasses
import json
from typing import Any, Callable

import ml_collections


class ConfigError(ValueError):
  """A config option that is unknown, of the wrong type or out of range."""


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


@dataclasses.dataclass(frozen=True)
class Option:
  """One config option: its default, its rule, whether a resumed run may change it, one line of doc."""
  default: Any
  rule: Rule
  doc: str
  resumable: bool = False


Options = dict[str, Option]


def defaults(options: Options) -> ml_collections.ConfigDict:
  """The nested ConfigDict of every option's default."""
  tree: dict = {}
  for path, option in options.items():
    *parents, leaf = path.split(".")
    node = tree
    for p in parents:
      node = node.setdefault(p, {})
    node[leaf] = option.default
  return ml_collections.ConfigDict(tree)


def flatten(config, prefix: str = ""):
  """(dotted path, value) of every leaf of a ConfigDict or nested dict."""
  for name, value in config.items():
    path = f"{prefix}{name}"
    if isinstance(value, (ml_collections.ConfigDict, dict)):
      yield from flatten(value, path + ".")
    else:
      yield path, value


def validate(config: ml_collections.ConfigDict, options: Options) -> None:
  """Raises ConfigError naming the first option that is not declared or breaks its rule."""
  for path, value in flatten(config):
    option = options.get(path)
    if option is None:
      parent = path.rsplit(".", 1)[0] + "." if "." in path else ""
      known = sorted({k[len(parent):].split(".")[0] for k in options if k.startswith(parent)})
      raise ConfigError(f"Unknown config option {path!r}; known options here: {', '.join(known)}.")
    rule = option.rule
    ok = (bool in rule.types or not isinstance(value, bool)) and (
        isinstance(value, rule.types) and rule.check(value))
    if not ok:
      raise ConfigError(f"config.{path}={value!r} is not allowed: use {rule.allowed}.")


def resumable(options: Options) -> tuple[str, ...]:
  return tuple(path for path, option in options.items() if option.resumable)


def describe(config: ml_collections.ConfigDict, options: Options) -> str:
  """A table of every option: value, default (when it differs), whether resumable, description."""
  values = dict(flatten(config))
  width = max(len(p) for p in options)
  lines = [f"{'option'.ljust(width)}  value  [default]  (r: may change on resume)  description"]
  for path, option in options.items():
    value = values.get(path, option.default)
    shown = repr(value) if value == option.default else f"{value!r} [{option.default!r}]"
    lines.append(f"{path.ljust(width)}  {shown}{'  (r)' if option.resumable else ''}  - {option.doc}"
                 f" [{option.rule.allowed or 'any value'}]")
  return "\n".join(lines)


def to_dict(config: ml_collections.ConfigDict) -> dict:
  """A JSON-safe plain dict (tuples become lists)."""
  return json.loads(config.to_json())


def differences(saved: dict, current: dict, ignore: tuple[str, ...] = ()) -> list[str]:
  """'path: saved -> current' for every flattened path that differs, except ignored ones."""
  flat_saved, flat_now = dict(flatten(saved)), dict(flatten(current))
  out = []
  for path in sorted(set(flat_saved) | set(flat_now)):
    if path in ignore or path.split(".")[0] in ignore:
      continue
    a, b = flat_saved.get(path, "<absent>"), flat_now.get(path, "<absent>")
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
      a, b = list(a), list(b)
    if a != b:
      out.append(f"{path}: {a!r} -> {b!r}")
  return out


def over_defaults(saved: dict, options: Options, retired: tuple[str, ...] = ()) -> ml_collections.ConfigDict:
  """A saved config read over today's defaults: options added since it was saved take their default.

  Options in `retired` (declared by their owner when an option is removed) are dropped; any other one
  that is not declared raises ConfigError: the saved config belongs to another kind of run.
  """
  flat = {p: v for p, v in flatten(saved) if p not in retired}
  unknown = sorted(p for p in flat if p not in options)
  if unknown:
    raise ConfigError(f"options {', '.join(unknown[:4])} are not options of this kind of run")
  config = defaults(options)
  config.update_from_flattened_dict(flat)  # ints into float options, lists into tuple options
  return config
