"""lm-eval results files as the leaderboard and the regression gate read them.

A results file is lm-eval's own `results_<date>.json` (written by `lm_eval --output_path`,
`lm-eval-abo run` or `optimize`). Each task in it becomes one `TaskResult`: every metric with its
standard error, n, the model, and the provenance an abo task records (`configs.<task>.metadata.abo`:
source artifact, method, hashes).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from lm_eval_abo.infra.errors import AboError
from lm_eval_abo.infra.files import read_json, read_text

NOT_METRICS = {"alias", "name", "sample_len", " ", ""}


@dataclass
class TaskResult:
    task: str
    metrics: dict[str, tuple[float | None, float | None]]  # "metric,filter" -> (value, stderr), in lm-eval's order
    higher_is_better: dict[str, bool]  # metric name (without filter) -> direction
    n: int | None
    model: str
    abo: dict = field(default_factory=dict)  # configs.<task>.metadata.abo, if an abo task
    file: Path = Path()
    date: float = 0.0
    eval_seconds: float | None = None
    samples_file: Path | None = None  # lm-eval's per-example log of this task (--log_samples), if written

    def per_example(self, metric: str) -> dict[str, float]:
        """The metric's value per example (keyed by lm-eval's hash of the document), from the samples log;
        empty without one or for a metric it does not hold per example."""
        if self.samples_file is None:
            return {}
        name, _, filter_name = metric.partition(",")
        values = {}
        for line in read_text(self.samples_file).splitlines():
            row = json.loads(line) if line.strip() else {}
            if row.get("filter") == filter_name and number(row.get(name)) is not None:
                values[row.get("doc_hash") or str(row.get("doc_id"))] = number(row[name])
        return values

    @property
    def primary(self) -> str:
        """The task's main metric: the first lm-eval lists (abo tasks have one)."""
        return next(iter(self.metrics))

    @property
    def method(self) -> str:
        return str(self.abo.get("method") or self.abo.get("source") or "-")

    def better_when_higher(self, metric: str) -> bool:
        return self.higher_is_better.get(metric.split(",")[0], True)


def number(value) -> float | None:
    """A metric as lm-eval wrote it (a float, or "N/A" where it computed no stderr)."""
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def model_label(data: dict) -> str:
    """The model a results file is about: the model_args' model (or pretrained), else the embedded
    model's name, else lm-eval's model_name, else the backend."""
    config = data.get("config") or {}
    args = config.get("model_args") or {}
    if isinstance(args, str):
        args = dict(part.partition("=")[::2] for part in args.split(",") if "=" in part)
    for key in ("model", "pretrained"):
        if args.get(key):
            return str(args[key])
    return str(config.get("embedded_model") or data.get("model_name") or config.get("model") or "?")


def find(paths) -> list[Path]:
    """The results files named, and those under the directories named."""
    found = []
    for path in map(Path, paths):
        if path.is_dir():
            found.extend(sorted(path.rglob("results_*.json")))
        elif path.is_file():
            found.append(path)
        else:
            raise AboError(f"{path}: no such file or directory")
    if not found:
        raise AboError(f"no lm-eval results_*.json in {', '.join(map(str, paths))}")
    return found


def read(path: Path) -> list[TaskResult]:
    data = read_json(path)
    if not isinstance(data, dict) or not isinstance(data.get("results"), dict):
        raise AboError(f"{path}: not an lm-eval results file (no 'results' mapping)")
    out = []
    for task, values in data["results"].items():
        metrics = {}
        for key, value in values.items():
            if key in NOT_METRICS or "_stderr," in key:
                continue
            metric, sep, filt = key.partition(",")
            stderr_key = f"{metric}_stderr{sep}{filt}"
            if number(value) is not None:
                metrics[key] = (number(value), number(values.get(stderr_key)))
        if not metrics:
            continue
        samples = (data.get("n-samples") or {}).get(task) or {}
        logged = path.with_name(f"samples_{task}_{path.stem.removeprefix('results_')}.jsonl")
        config = (data.get("configs") or {}).get(task) or {}
        out.append(TaskResult(
            task=task, metrics=metrics, higher_is_better=(data.get("higher_is_better") or {}).get(task) or {},
            n=samples.get("effective"), model=model_label(data), abo=(config.get("metadata") or {}).get("abo") or {},
            file=path, date=number(data.get("date")) or path.stat().st_mtime,
            eval_seconds=number(data.get("total_evaluation_time_seconds")),
            samples_file=logged if logged.is_file() else None,
        ))
    return out


def read_all(paths) -> list[TaskResult]:
    return [result for path in find(paths) for result in read(path)]


def latest(results: list[TaskResult], key) -> dict:
    """The newest result per key(result)."""
    chosen: dict = {}
    for result in sorted(results, key=lambda r: r.date):
        chosen[key(result)] = result
    return chosen
