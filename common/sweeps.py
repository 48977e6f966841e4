"""Sweep helpers: lists of config overrides, and readable names for the runs they make.

A sweep is a list of override dicts from config paths to values, e.g.

    product(**{"loss.aux_weight_g": [0.5, 1.0], "model.d_dropout": [0.0, 0.3]})   # 4 members
    zip_(**{"loss.gp_weight": [1.0, 10.0], "d_steps": [1, 5]})                     # 2 members

Configs ship named sweeps as `get_sweep(name) -> list[dict]`; `scripts/sweep.py` runs them. A member
may carry a label under LABEL ("_name"): it names the member's workdir instead of its overrides and
is not passed to the config.
"""

import hashlib
import itertools
import re
from typing import Any, Iterable

LABEL = "_name"
_UNSAFE = re.compile(r"[^A-Za-z0-9._=,+-]")


def product(**axes: Iterable[Any]) -> list[dict]:
  """Every combination of the axes' values, the last axis varying fastest."""
  names = list(axes)
  return [dict(zip(names, values)) for values in itertools.product(*(list(axes[k]) for k in names))]


def zip_(**axes: Iterable[Any]) -> list[dict]:
  """The i-th member takes the i-th value of every axis; all axes must have the same length."""
  lists = {k: list(v) for k, v in axes.items()}
  lengths = {len(v) for v in lists.values()}
  if len(lengths) > 1:
    raise ValueError(f"zip_ needs axes of one length; got {({k: len(v) for k, v in lists.items()})}.")
  n = lengths.pop() if lengths else 0
  return [{k: v[i] for k, v in lists.items()} for i in range(n)]


def config_overrides(member: dict) -> dict:
  """The member's overrides without its label."""
  return {k: v for k, v in member.items() if k != LABEL}


def format_value(value: Any) -> str:
  """A value as `--config.key=VALUE` takes it (ml_collections parses it by the key's type)."""
  if isinstance(value, float):
    return repr(value)
  if isinstance(value, (tuple, list)):
    return str(tuple(value))
  return str(value)


def _short(value: Any) -> str:
  if isinstance(value, float):
    return f"{value:g}"
  if isinstance(value, (tuple, list)):
    return "-".join(_short(v) for v in value)
  return str(value)


def member_name(member: dict, max_len: int = 100) -> str:
  """A readable, filesystem-safe name: 'loss.gp_weight=10,d_steps=5', or the member's label.

  Characters outside [A-Za-z0-9._=,+-] become '_'; a name longer than max_len is cut and ends in a
  hash of the whole member, so distinct members keep distinct names.
  """
  if member.get(LABEL):
    rest = {k: v for k, v in member.items() if k == "seed"}
    parts = [str(member[LABEL])] + [f"{k}={_short(v)}" for k, v in rest.items()]
  else:
    parts = [f"{k}={_short(v)}" for k, v in member.items()] or ["base"]
  name = _UNSAFE.sub("_", ",".join(parts)).strip(".") or "base"
  if len(name) > max_len:
    digest = hashlib.sha1(repr(sorted(member.items(), key=str)).encode()).hexdigest()[:8]
    name = name[:max_len - 9] + "-" + digest
  return name


def check_names(members: list[dict]) -> None:
  """Raises ValueError if two members would share a workdir."""
  seen = {}
  for m in members:
    name = member_name(m)
    if name in seen:
      raise ValueError(f"Sweep members {seen[name]} and {m} have the same name {name!r}.")
    seen[name] = m


def unknown_sweep(name: str, known: Iterable[str]) -> ValueError:
  """The error every get_sweep raises for a name it doesn't know."""
  return ValueError(f"Unknown sweep {name!r}; known sweeps: {', '.join(sorted(known))}.")
