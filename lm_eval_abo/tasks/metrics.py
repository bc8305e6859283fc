"""A task's metric as the search and the test comparison read it: which one (`--metric`), its direction
(lm-eval's `higher_is_better`), its aggregation (lm-eval's, e.g. the mean, or corpus BLEU), each example's
value, and what counts as an error.

An error is an example whose value misses the error threshold: below it, or above it for a metric where lower
is better (TER). Exact-match-like 0/1 metrics have the threshold 1 (0 where lower is better): any miss is an
error. Graded metrics have a default per lm-eval metric, on the metric's own scale (`THRESHOLDS`);
`--error-threshold` sets another. For corpus metrics over (gold, prediction) pairs of a classification
(lm-eval's `f1`, `mcc`) an example's value is whether its prediction is the gold one; for corpus metrics
over texts (BLEU, chrF, TER) it is the metric of that one example (sentence BLEU, ...).
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field

from lm_eval_abo.infra.errors import AboError

log = logging.getLogger("lm_eval_abo")

# metric -> (default error threshold, the metric's scale), graded lm-eval metrics and common graded names
THRESHOLDS: dict[str, tuple[float, str]] = {
    "bleu": (50.0, "0-100"), "chrf": (50.0, "0-100"), "chrf++": (50.0, "0-100"),
    "ter": (50.0, "0-100+, lower is better"),
    "rouge1": (0.5, "0-1"), "rouge2": (0.5, "0-1"), "rougeL": (0.5, "0-1"), "rougeLsum": (0.5, "0-1"),
    "brier_score": (0.5, "0-2, lower is better"),
}
# lm-eval's corpus aggregations over (gold, prediction) pairs of a classification
PAIR_AGGREGATIONS = ("f1_score", "matthews_corrcoef")


def primary_metric(task, choice: str | None = None) -> tuple[str, str]:
    """(metric, filter): the one named by `choice` ("metric" or "metric,filter"), else the task's first
    metric under its first filter (lm-eval's `metric,filter` result key)."""
    metrics = list(task.aggregation())
    filters = [f["name"] for f in task.config.filter_list or []] or ["none"]
    if choice is None:
        return metrics[0], filters[0]
    metric, _, filter_name = choice.partition(",")
    if metric not in metrics or (filter_name and filter_name not in filters):
        known = ", ".join(f"{m},{f}" for f in filters for m in metrics)
        raise AboError(f"--metric {choice!r}: task {task.config.task!r} has no such metric; choose one of {known} "
                       "(`metric` alone takes its first filter)")
    return metric, filter_name or filters[0]


def quietly(aggregate: Callable) -> Callable:
    """An lm-eval aggregation without the warnings it gives on a degenerate resample (one class, an empty text)."""
    def run(items):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return aggregate(items)
    run.__name__ = getattr(aggregate, "__name__", "aggregate")
    return run


@dataclass
class Metric:
    """The metric the run optimizes, with its error threshold."""

    name: str
    filter_name: str
    higher_is_better: bool
    aggregation: Callable  # lm-eval's, over the examples' items
    threshold: float  # below it (above, where lower is better): an error
    graded: bool  # not exact-match-like: its threshold is a default per metric or --error-threshold
    warned: bool = field(default=False, repr=False)

    @classmethod
    def of(cls, task, choice: str | None = None, error_threshold: float | None = None) -> Metric:
        """The metric `choice` names (default: the task's first) of an lm-eval task; `error_threshold`: given
        by the run, else the metric's default."""
        name, filter_name = primary_metric(task, choice)
        higher = bool(task.higher_is_better().get(name, True))
        aggregation = task.aggregation()[name]
        known = THRESHOLDS.get(name)
        graded = known is not None or error_threshold is not None
        threshold = error_threshold if error_threshold is not None else known[0] if known else 1.0 if higher else 0.0
        if not math.isfinite(threshold):
            raise AboError(f"--error-threshold must be a finite number, got {threshold!r}")
        return cls(name, filter_name, higher, aggregation, float(threshold), graded)

    @property
    def key(self) -> str:
        return f"{self.name},{self.filter_name}"

    @property
    def mean(self) -> bool:
        from lm_eval.api.metrics import mean

        return self.aggregation is mean

    @property
    def aggregate(self) -> Callable | None:
        """The aggregation a test comparison re-applies to resamples of documents; None: the mean."""
        return None if self.mean else quietly(self.aggregation)

    def value(self, item) -> float:
        """An example's value from its lm-eval item: the item itself, whether a classification pair agrees, or
        the task's aggregation of that one item (corpus metrics over texts)."""
        if isinstance(item, (int, float)):
            return float(item)
        if getattr(self.aggregation, "__name__", "") in PAIR_AGGREGATIONS:
            gold, prediction = item
            return float(gold == prediction)
        value = float(quietly(self.aggregation)([item]))
        return value if math.isfinite(value) else 0.0

    def correct(self, value: float) -> bool:
        """Not an error: the value reaches the threshold (for lower-is-better: does not exceed it)."""
        if not self.graded and not self.warned and value not in (0.0, 1.0):
            self.warned = True
            log.warning("metric %s is not 0/1 (an example scored %.4g) and has no default error threshold: below %g "
                        "counts as an error; set --error-threshold on the metric's scale",
                        self.name, value, self.threshold)
        return value >= self.threshold if self.higher_is_better else value <= self.threshold

    def describe(self) -> str:
        """What counts as an error, in words (for the reports)."""
        side = "below" if self.higher_is_better else "above"
        if not self.graded:
            return f"{self.key}: 0/1, an error is {side} {self.threshold:g}"
        scale = f", scale {THRESHOLDS[self.name][1]}" if self.name in THRESHOLDS else ""
        return f"{self.key}: graded{scale}, an error is {side} {self.threshold:g} (--error-threshold)"
