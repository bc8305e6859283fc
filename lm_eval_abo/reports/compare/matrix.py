"""The statistics of a comparison of models at several prompts, from the evaluations of every (prompt, model)
pair on the same held-out test documents:

- the transfer matrix: each pair's score, and its paired difference from the same model at the baseline
  prompt, with a paired bootstrap interval (`infra.stats.compare`);
- the rankings of the models under each setting (a setting gives each model its prompt: the baseline for
  all, each model's own best, one shared prompt), with Kendall's tau-b between the settings' scores;
- the rank changes: a pair of models whose paired difference (A - B, per document, each under its own prompt
  of the setting) changes sign from one setting to another. A change holds only when both differences lie
  beyond their intervals (the interval of one excludes 0 on one side, of the other on the other side);
  the others are within noise and are listed as such, never counted.

Plain data in, plain data out (`to_dict`): the run layer evaluates, the report writers render.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, field

from lm_eval_abo.infra import stats

BASELINE = "baseline"


@dataclass(frozen=True)
class Evaluated:
    """A prompt (a row of the matrix) on a model (a column), on the held-out test documents."""

    prompt: str
    model: str
    score: float
    stderr: float | None
    n: int
    per_doc: dict[int, object]  # position in the test split -> the metric's item (its value, for a mean)
    correct: dict[int, bool]
    results: str = ""  # lm-eval's results JSON of this pair
    aggregate: Callable | None = None  # the metric's aggregation of the items (None: the mean)


@dataclass(frozen=True)
class Setting:
    """How each model gets its prompt: `prompts` maps a model to the row it is scored under."""

    name: str
    prompts: dict[str, str]


@dataclass
class Matrix:
    rows: list[str]  # prompts, the baseline first
    models: list[str]
    settings: list[Setting]
    higher_is_better: bool = True
    cells: list[dict] = field(default_factory=list)
    rankings: list[dict] = field(default_factory=list)
    tau: list[dict] = field(default_factory=list)
    pairs: list[dict] = field(default_factory=list)
    changes: list[dict] = field(default_factory=list)

    def cell(self, prompt: str, model: str) -> dict | None:
        return next((c for c in self.cells if c["prompt"] == prompt and c["model"] == model), None)

    def to_dict(self) -> dict:
        return {"rows": self.rows, "models": self.models, "higher_is_better": self.higher_is_better,
                "settings": [{"name": s.name, "prompts": s.prompts} for s in self.settings], "cells": self.cells,
                "rankings": self.rankings, "tau": self.tau, "pairs": self.pairs, "changes": self.changes}


def beyond(interval) -> int:
    """+1 where an interval lies above 0, -1 below, 0 where it holds 0."""
    lo, hi = interval
    return 1 if lo > 0 else -1 if hi < 0 else 0


def _compared(a: Evaluated, b: Evaluated, seed: int) -> dict:
    """b against a on their common documents: the difference b - a and its interval."""
    c = stats.compare(a.per_doc, b.per_doc, a.correct, b.correct, seed, b.aggregate)
    return {"difference": c.difference, "ci": list(c.interval), "mcnemar_p": c.mcnemar_p,
            "permutation_p": c.permutation_p, "n": c.n,
            "beyond": beyond(c.interval)}


def ranks(scores: dict[str, float], higher_is_better: bool = True) -> dict[str, int]:
    """Competition ranks (1, 2, 2, 4): one more than the models that scored strictly better."""
    sign = 1 if higher_is_better else -1
    return {m: 1 + sum(sign * other > sign * s for other in scores.values()) for m, s in scores.items()}


def build(evaluated: list[Evaluated], rows: list[str], models: list[str], settings: list[Setting],
          higher_is_better: bool = True, seed: int = 1234) -> Matrix:
    """The matrix of `evaluated` (missing pairs are left out: a run that failed, a model that did not load)."""
    found = {(e.prompt, e.model): e for e in evaluated}
    matrix = Matrix(rows, models, settings, higher_is_better)
    for prompt in rows:
        for model in models:
            e = found.get((prompt, model))
            if e is None:
                continue
            cell = {"prompt": prompt, "model": model, "score": e.score, "stderr": e.stderr, "n": e.n,
                    "results": e.results}
            base = found.get((BASELINE, model))
            if base is not None and prompt != BASELINE:
                cell |= {"baseline": base.score, **_compared(base, e, seed)}
            matrix.cells.append(cell)

    under: dict[str, dict[str, Evaluated]] = {}  # setting -> model -> its evaluation under the setting
    for setting in settings:
        under[setting.name] = {m: found[(p, m)] for m, p in setting.prompts.items() if (p, m) in found}
        scored = under[setting.name]
        rank = ranks({m: e.score for m, e in scored.items()}, higher_is_better)
        order = sorted(scored, key=lambda m: (rank[m], models.index(m)))
        matrix.rankings.append({"setting": setting.name, "order": [
            {"model": m, "prompt": scored[m].prompt, "score": scored[m].score, "rank": rank[m]} for m in order]})
        for a, b in itertools.combinations([m for m in models if m in scored], 2):
            # a - b on each document: b's evaluation as the "baseline" of a's
            matrix.pairs.append({"setting": setting.name, "a": a, "b": b, **_compared(scored[b], scored[a], seed)})

    for first, second in itertools.combinations(settings, 2):
        common = [m for m in models if m in under[first.name] and m in under[second.name]]
        xs = [under[first.name][m].score for m in common]
        ys = [under[second.name][m].score for m in common]
        matrix.tau.append({"a": first.name, "b": second.name, "models": len(common),
                           "tau": stats.kendall_tau(xs, ys) if len(common) > 1 else None})
        matrix.changes += _changes(matrix.pairs, first.name, second.name)
    return matrix


def _changes(pairs: list[dict], first: str, second: str) -> list[dict]:
    """The pairs whose difference changed sign from setting `first` to `second`, each marked whether the change
    holds (both differences beyond their intervals)."""
    before = {(p["a"], p["b"]): p for p in pairs if p["setting"] == first}
    after = {(p["a"], p["b"]): p for p in pairs if p["setting"] == second}
    found = []
    for key in [k for k in before if k in after]:  # in the models' order
        x, y = before[key], after[key]
        if x["difference"] * y["difference"] >= 0:
            continue
        holds = x["beyond"] * y["beyond"] == -1
        found.append({"from": first, "to": second, "a": key[0], "b": key[1], "before": x["difference"],
                      "before_ci": x["ci"], "after": y["difference"], "after_ci": y["ci"], "holds": holds})
    return sorted(found, key=lambda c: not c["holds"])  # stable: those that hold first
