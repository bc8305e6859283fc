"""`lm-eval-abo check`: the CI gate. New lm-eval results against a baseline, per task and metric.

A metric regresses when it moves the wrong way by more than `max_drop` (absolute), and, with
`stderr_aware`, also by more than 1.96 times the combined standard error of the two scores (a drop
inside the noise of small test sets does not fail a pull request). With `paired`, where both sides have
lm-eval's per-sample results (`--log_samples`), the drop must instead be significant on a paired test
over the examples both scored: the 95% paired bootstrap interval of the change lies wholly on the worse
side of zero. A task of the baseline missing from the new results fails too. The report is a markdown
table fit for a pull-request comment, and says which test decided each row.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from lm_eval_abo.infra import stats
from lm_eval_abo.reports import results as lm_results
from lm_eval_abo.reports.markdown import table

Z = 1.96  # two-sided 95 %


@dataclass
class Comparison:
    task: str
    metric: str
    baseline: lm_results.TaskResult | None
    new: lm_results.TaskResult | None
    change: float | None  # new - baseline
    allowed: float | None  # the largest drop tolerated
    status: str  # ok | regression | missing | new
    test: str = ""  # what decided it: the drop alone, the standard errors, or a paired test


@dataclass
class Outcome:
    comparisons: list[Comparison]
    markdown: str

    @property
    def regressed(self) -> bool:
        return any(c.status in ("regression", "missing") for c in self.comparisons)


def _by_metric(paths) -> dict[tuple[str, str], lm_results.TaskResult]:
    newest = lm_results.latest(lm_results.read_all(paths), key=lambda r: r.task)
    return {(r.task, metric): r for r in newest.values() for metric in r.metrics}


def _paired(base: lm_results.TaskResult, new: lm_results.TaskResult, metric: str) -> tuple[tuple[float, float], int] | None:
    """The 95% paired interval of new - baseline over the examples both logged, and their number."""
    a, b = base.per_example(metric), new.per_example(metric)
    common = sorted(a.keys() & b.keys())
    if len(common) < 2:
        return None
    return stats.paired_interval([a[k] for k in common], [b[k] for k in common]), len(common)


def compare(base: lm_results.TaskResult, new: lm_results.TaskResult, metric: str, max_drop: float, stderr_aware: bool,
            paired: bool = False) -> Comparison:
    (b, b_se), (v, v_se) = base.metrics[metric], new.metrics[metric]
    change = v - b
    higher = base.better_when_higher(metric)
    drop = -change if higher else change
    allowed, test = max_drop, "drop"
    interval = _paired(base, new, metric) if paired else None
    if interval:
        (lo, hi), n = interval
        significant = hi < 0 if higher else lo > 0
        test = f"paired, n={n}: 95% CI {lo:+.4f} to {hi:+.4f}"
        status = "regression" if drop > max_drop + 1e-12 and significant else "ok"
        return Comparison(base.task, metric, base, new, change, allowed, status, test)
    if stderr_aware and b_se is not None and v_se is not None:
        allowed, test = max(max_drop, Z * math.sqrt(b_se**2 + v_se**2)), "stderr"
    status = "regression" if drop > allowed + 1e-12 else "ok"
    return Comparison(base.task, metric, base, new, change, allowed, status, test)


def check(results, baseline, max_drop: float = 0.02, stderr_aware: bool = False, paired: bool = False) -> Outcome:
    new_by, base_by = _by_metric([results]), _by_metric([baseline])
    comparisons = []
    for key in sorted(set(base_by) | set(new_by)):
        base, new = base_by.get(key), new_by.get(key)
        if base and new:
            comparisons.append(compare(base, new, key[1], max_drop, stderr_aware, paired))
        else:
            comparisons.append(Comparison(*key, base, new, None, None, "missing" if base else "new"))
    return Outcome(comparisons, report(comparisons, results, baseline, max_drop, stderr_aware, paired))


def _score(result: lm_results.TaskResult | None, metric: str) -> str:
    if result is None:
        return "-"
    value, stderr = result.metrics[metric]
    text = f"{value:.4f}" + (f" ± {stderr:.4f}" if stderr is not None else "")
    return text + (f" (n={result.n})" if result.n is not None else "")


STATUS = {"ok": "✅ ok", "regression": "❌ regression", "missing": "❌ missing in new results", "new": "🆕 new"}


def report(comparisons: list[Comparison], results, baseline, max_drop: float, stderr_aware: bool, paired: bool = False) -> str:
    failed = [c for c in comparisons if c.status in ("regression", "missing")]
    title = f"{len(failed)} regression(s)" if failed else "no regression"
    rule = f"a drop larger than {max_drop:g}" + (f" and larger than {Z} × the combined standard error" if stderr_aware else "")
    if paired:
        rule += " (where both sides logged their samples: and significant on a paired test)"
    body = [[c.task, c.metric, _score(c.baseline, c.metric), _score(c.new, c.metric),
             "-" if c.change is None else f"{c.change:+.4f}", "-" if c.allowed is None else f"{c.allowed:.4f}", c.test or "-",
             STATUS[c.status]] for c in comparisons]
    lines = [
        f"### lm-eval-abo check: {title}",
        "",
        f"New results `{results}` against baseline `{baseline}`; {rule} fails.",
        "",
        *table(["task", "metric", "baseline", "new", "change", "allowed drop", "test", "status"], body, left=2),
    ]
    differing = [c.task for c in comparisons if c.baseline and c.new and c.baseline.n != c.new.n]
    if differing:
        lines += ["", f"Note: the number of examples differs for {', '.join(sorted(set(differing)))}; compare like with like."]
    return "\n".join(lines)
