"""SWEEP_DIR/sweep.json: what a sweep asked for, compared with what it asked for before."""

import json
import os
import time

from scripts.sweeping.members import REPO, read_json


def sweep_record(args, config_path: str, preset: str, name: str, fixed: list[str],
                 members: list[dict]) -> dict:
  """What SWEEP_DIR/sweep.json records: the config file (relative to the repository), the
  sweep, seeds, overrides and members, as JSON gives them back."""
  rel = os.path.relpath(config_path, REPO)
  config_id = (config_path if rel.startswith("..") else rel) + (f":{preset}" if preset else "")
  return json.loads(json.dumps({"config": config_id, "sweep": name, "seeds": args.seeds,
                                "overrides": fixed, "members": members}, default=str))


def check_record(local_dir: str, record: dict) -> None:
  """Refuses a sweep directory that records another config's sweep."""
  path = os.path.join(local_dir, "sweep.json")
  if not os.path.exists(path):
    return
  old = read_json(path).get("config", "")
  old_path, _, old_preset = old.partition(":")
  new_path, _, new_preset = record["config"].partition(":")
  if (os.path.abspath(os.path.join(REPO, old_path)), old_preset) != (
      os.path.abspath(os.path.join(REPO, new_path)), new_preset):
    raise SystemExit(f"Error: {local_dir} holds a sweep of {old}, not of {record['config']}: "
                     "pass another --workdir.")


def write_record(local_dir: str, record: dict) -> None:
  """Writes sweep.json; a different earlier record is kept beside it, and the change is said."""
  path = os.path.join(local_dir, "sweep.json")
  os.makedirs(local_dir, exist_ok=True)
  if os.path.exists(path):
    old = read_json(path)
    changes = [f"{k}: {old.get(k)!r} -> {record[k]!r}" for k in record
               if k != "members" and old.get(k) != record[k]]
    if old.get("members") != record["members"]:
      changes.append("members changed")
    if not changes:
      return
    kept = f"{path}.{time.strftime('%Y%m%d-%H%M%S')}"
    os.replace(path, kept)
    print(f"Note: this sweep differs from the one recorded before ({'; '.join(changes)}); "
          f"the old record is kept as {kept}.")
  with open(path, "w") as f:
    json.dump(record, f, indent=1)
