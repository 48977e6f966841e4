"""A sweep's summary: summary.csv (a row per run), summary_grouped.csv (mean and std over seeds),
summary.md (both, sorted by the metric) and summary.png; only results of the config asked for."""

import collections
import csv
import json
import math
import os

from etils import epath

from common import config as cfg
from common import sweeps
from scripts.sweeping.members import Job, finished, has_current_results, read_json


# Result fields left out of summary.md (summary.csv keeps everything).
MD_SKIP = ("step", "final_epoch.epoch", "final_epoch.step", "final_epoch.epoch_time_s",
           "final_epoch.examples_per_sec", "compile_time_s", "train_time_s", "num_params")


def flatten(tree: dict) -> dict:
  """A results tree's numbers and strings by dotted key (lists and booleans left out)."""
  return {k: v for k, v in cfg.flatten(tree)
          if isinstance(v, (int, float, str)) and not isinstance(v, bool)}


# GAN runs are ranked by sample quality, never by a loss: the first of these their results hold.
GAN_QUALITY = ("eval.inception_fid", "eval.fid")


NOT_RANKED = ("not ranked: no run has a sample-quality metric ({}). GAN runs evaluate their "
              "samples with a classifier: train one (python -m cnn.main --config=configs/cnn.py), "
              "pass --config.classifier_workdir=runs/cnn, or rank by --metric=KEY.")


def default_metric(rows: list[dict], is_gan: bool) -> str | None:
  """test.accuracy for classifiers; for GANs a quality metric, or None when no run has one."""
  if not is_gan:
    return "test.accuracy"
  return next((m for m in GAN_QUALITY if any(m in r for r in rows)), None)


def lower_is_better(metric: str, mode: str) -> bool:
  if mode != "auto":
    return mode == "min"
  return any(s in metric.lower() for s in ("loss", "fid", "error", "time"))


def as_number(v) -> float:
  if isinstance(v, (int, float)) and not isinstance(v, bool):
    return float(v)
  return math.nan


def mean_std(values: list[float]) -> tuple[float, float]:
  """Mean and sample std (ddof 1); the std of fewer than two values is NaN, never 0."""
  vals = [v for v in values if not math.isnan(v)]
  if not vals:
    return math.nan, math.nan
  m = sum(vals) / len(vals)
  if len(vals) < 2:
    return m, math.nan
  return m, math.sqrt(sum((v - m) ** 2 for v in vals) / (len(vals) - 1))


def fmt(v) -> str:
  if isinstance(v, float):
    return "" if math.isnan(v) else f"{v:.4g}"
  return str(v)


def md_table(header: list[str], rows: list[list]) -> str:
  esc = lambda s: fmt(s).replace("|", "\\|")
  lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
  lines += ["| " + " | ".join(esc(c) for c in row) + " |" for row in rows]
  return "\n".join(lines)


def summarize(jobs: list[Job], out_dir: str, is_gan: bool, metric: str | None, mode: str,
              title: str) -> dict:
  """Writes summary.csv, summary_grouped.csv, summary.md and summary.png; returns what it wrote."""
  override_keys = list(dict.fromkeys(
      k for j in jobs for k in sweeps.config_overrides(j.member)))
  rows, missing = run_rows(jobs, is_gan, override_keys)
  os.makedirs(out_dir, exist_ok=True)
  metric = metric or default_metric(rows, is_gan)
  low = lower_is_better(metric or "", mode)
  result_keys = sorted({k for r in rows for k in r} - {"member", "seed", *override_keys})
  result_keys = ([metric] if metric in result_keys else []) + [
      k for k in result_keys if k not in (metric, "wall_time_s")] + (
          ["wall_time_s"] if "wall_time_s" in result_keys else [])
  write_csv(os.path.join(out_dir, "summary.csv"), ["member", *override_keys, "seed", *result_keys],
            rows)
  numeric = [k for k in result_keys if any(not math.isnan(as_number(r.get(k))) for r in rows)]
  groups = group_rows(rows, override_keys, numeric, metric, low)
  write_csv(os.path.join(out_dir, "summary_grouped.csv"), ["member", *override_keys, "n"] + [
      f"{k}.{s}" for k in numeric for s in ("mean", "std")], groups)
  varying = [k for k in override_keys
             if len({json.dumps(r.get(k), default=str) for r in rows}) > 1]
  text = markdown(title, jobs, rows, groups, varying, numeric, metric, low, missing)
  with open(os.path.join(out_dir, "summary.md"), "w") as f:
    f.write(text)
  png = plot(rows, groups, varying, metric, os.path.join(out_dir, "summary.png"))
  return {"rows": rows, "groups": groups, "metric": metric, "missing": missing, "png": png}


def run_rows(jobs: list[Job], is_gan: bool, override_keys: list[str]):
  """(a row per run with current results: member, overrides, seed, flattened results; the jobs
  without current results)."""
  rows, missing = [], []
  for job in jobs:
    if not has_current_results(job, is_gan):
      missing.append(job)
      continue
    results = read_json(epath.Path(job.workdir) / "results.json")
    row = {"member": job.group}
    row.update({k: sweeps.config_overrides(job.member).get(k, "") for k in override_keys})
    row["seed"] = job.seed
    row.update(flatten({k: v for k, v in results.items() if k != "preempted"}))
    rows.append(row)
  return rows, missing


def write_csv(path: str, columns: list[str], rows: list[dict]) -> None:
  with open(path, "w", newline="") as f:
    writer = csv.DictWriter(f, columns, restval="")
    writer.writeheader()
    writer.writerows(rows)


def group_rows(rows: list[dict], override_keys: list[str], numeric: list[str],
               metric: str | None, low: bool) -> list[dict]:
  """A row per member: its overrides, its seed count n, and mean and std of each numeric key,
  sorted by the metric's mean (members without it last)."""
  by_group = collections.OrderedDict()
  for row in rows:
    by_group.setdefault(row["member"], []).append(row)
  groups = []
  for name, members in by_group.items():
    g = {"member": name, **{k: members[0].get(k, "") for k in override_keys}, "n": len(members)}
    for k in numeric:
      g[k + ".mean"], g[k + ".std"] = mean_std([as_number(r.get(k)) for r in members])
    groups.append(g)
  value = lambda g: g.get(f"{metric}.mean", math.nan)
  return sorted(groups, key=lambda g: (math.isnan(value(g)),
                                       0.0 if math.isnan(value(g)) else (1 if low else -1) * value(g)))


def markdown(title: str, jobs: list[Job], rows: list[dict], groups: list[dict], varying: list[str],
             numeric: list[str], metric: str | None, low: bool, missing: list[Job]) -> str:
  """summary.md: the overrides that differ between members, and the metrics that matter."""
  shown = [k for k in numeric if not any(k == m or k.startswith(m + ".") for m in MD_SKIP)]
  text = [f"# Sweep {title}", "",
          f"{len(rows)} finished runs of {len(jobs)}; " + (
              f"sorted by `{metric}` ({'lower' if low else 'higher'} is better)." if metric
              else NOT_RANKED.format(", ".join(GAN_QUALITY))), "",
          "## Mean ± std over seeds", "",
          md_table(["member", *varying, "n"] + shown,
                   [[g["member"], *[g[k] for k in varying], g["n"]] +
                    [f"{fmt(g[k + '.mean'])} ± {fmt(g[k + '.std'])}" if g["n"] > 1
                     else fmt(g[k + ".mean"]) for k in shown] for g in groups]),
          "", "## Runs", "",
          md_table(["member", *varying, "seed"] + shown,
                   [[r["member"], *[r.get(k, "") for k in varying], r["seed"]] +
                    [r.get(k, "") for k in shown] for r in rows])]
  if missing:
    text += ["", "## Not finished", ""] + [f"- {j.name} ({missing_reason(j)})" for j in missing]
  return "\n".join(text) + "\n"


def missing_reason(job: Job) -> str:
  if job.status not in ("pending", "finished"):
    return job.status
  if finished(job.workdir):
    return "its results.json is another config's"
  return "no results.json"


def plot(rows: list[dict], groups: list[dict], varying: list[str], metric: str | None,
         path: str) -> str | None:
  """The metric per member, and against each swept value (runs as dots, means as a line)."""
  values = [as_number(r.get(metric)) for r in rows]
  if not rows or not metric or all(math.isnan(v) for v in values):
    return None
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  # One panel per distinct swept column (options that always vary together share a panel).
  panels, seen = [], set()
  for k in varying:
    column = tuple(json.dumps(r.get(k), default=str) for r in rows)
    if column not in seen:
      seen.add(column)
      panels.append(k)
  if len(panels) > 4:  # e.g. labelled members that each change many options: the member panel says it
    panels = []
  n = 1 + len(panels)
  fig, axes = plt.subplots(1, n, figsize=(4.2 * n, 3.6), squeeze=False)
  ax = axes[0][0]
  names = [g["member"] for g in groups]
  means = [g.get(metric + ".mean", math.nan) for g in groups]
  stds = [g.get(metric + ".std", 0.0) for g in groups]
  ax.errorbar(range(len(names)), means, yerr=stds, fmt="o", capsize=3)
  ax.set_xticks(range(len(names)))
  ax.set_xticklabels(names, rotation=60, ha="right", fontsize=6)
  ax.set_ylabel(metric)
  ax.set_title("members (mean ± std)", fontsize=9)
  for ax, key in zip(axes[0][1:], panels):
    xs = [r.get(key) for r in rows]
    numeric = all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in xs)
    if numeric:
      pos = [float(x) for x in xs]
      ticks = sorted(set(pos))
      if ticks[0] > 0 and ticks[-1] / ticks[0] >= 50:
        ax.set_xscale("log")
      if len(ticks) <= 8:
        ax.set_xticks(ticks)
        ax.set_xticklabels([f"{t:g}" for t in ticks], fontsize=7)
    else:
      labels = list(dict.fromkeys(str(x) for x in xs))
      pos = [labels.index(str(x)) for x in xs]
      ticks = list(range(len(labels)))
      ax.set_xticks(ticks)
      ax.set_xticklabels(labels, rotation=30, ha="right", fontsize=7)
    ax.scatter(pos, values, alpha=0.5, s=14)
    line = [mean_std([v for p, v in zip(pos, values) if p == t])[0] for t in ticks]
    ax.plot(ticks, line, "-" if numeric else "_", color="C1", markersize=20)
    ax.set_xlabel(key)
    ax.set_title(f"{metric} vs {key}", fontsize=9)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)
  return path
