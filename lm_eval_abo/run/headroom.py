"""What the baseline leaves to gain, before the first optimizer call: its dev score, the share of its
dev answers the task's filter could not read (format failures), how many different answers it gives,
what giving the commonest gold answer every time would score, and the smallest gain the dev and test
sizes can show. A saturated baseline, or splits too small to show any gain there is room for, is a
warning line naming the flag to change, so no budget is spent on a run that cannot show anything."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from lm_eval_abo.infra.stats import smallest_gain

SATURATED = 0.8  # a baseline at or above this share has little left to gain


@dataclass(frozen=True)
class Headroom:
    metric: str
    dev: float
    n_dev: int
    unread: int  # dev answers the filter could not read
    distinct: int  # different answers the baseline gave on dev
    n_test: int
    alpha: float
    dev_gain: float | None  # the smallest gain --accept paired can show on dev (one-sided), None: none
    test_gain: float | None  # the smallest gain the test comparison can show (two-sided McNemar), None: none
    binary: bool  # a 0/1 metric, for which the smallest gains are exact
    errors: int = 0  # dev examples that miss the metric's error threshold
    error_rule: str = ""  # what counts as an error (`tasks.metrics.Metric.describe`)
    commonest: str = ""  # the commonest gold answer on dev: a prompt that always gives it is a floor to beat
    commonest_count: int = 0  # dev examples whose gold answer it is

    @classmethod
    def of(cls, bridge, prompt, dev_indices: list[int], n_test: int, alpha: float) -> Headroom:
        """The baseline's headroom, from its dev samples (scored once per run: no new target requests)."""
        [score] = bridge.score([prompt], "dev", dev_indices, capped=False)
        samples = score.samples
        [(commonest, count)] = Counter(s.target for s in samples).most_common(1) or [("", 0)]
        return cls(metric=bridge.metric_key, dev=score.value, n_dev=len(samples), unread=sum(bridge.unread(samples)),
                   distinct=len({s.answer for s in samples}), n_test=n_test, alpha=alpha,
                   dev_gain=smallest_gain(len(samples), alpha, two_sided=False), test_gain=smallest_gain(n_test, alpha),
                   binary=bridge.measure.mean and not bridge.measure.graded and all(s.score in (0.0, 1.0) for s in samples),
                   errors=sum(not s.correct for s in samples),
                   error_rule=bridge.measure.describe(), commonest=commonest, commonest_count=count)

    def warnings(self, higher_is_better: bool = True) -> list[str]:
        """At most one line: what keeps this run from showing a gain, and the flag that changes it."""
        room = 1.0 - self.dev if higher_is_better else self.dev
        if not self.binary:
            return []
        if higher_is_better and self.dev >= SATURATED:
            return [f"warning: the baseline already scores {self.dev:.3f} on dev: little is left to gain; choose a "
                    "harder task or difficulty (e.g. --metadata '{\"abo_difficulty\": 2}')"]
        if self.test_gain is None or self.test_gain > room:
            return [f"warning: {self.n_test} test examples cannot show a gain of the {room:.3f} left above the baseline "
                    f"at alpha {self.alpha:g}; raise --test-limit"]
        if self.dev_gain is None or self.dev_gain > room:
            return [f"warning: {self.n_dev} dev examples cannot show a gain of the {room:.3f} left above the baseline "
                    f"at alpha {self.alpha:g}; raise --dev-limit"]
        return []

    def text(self, higher_is_better: bool = True) -> str:
        def gain(value, n, test):
            return f"{value:+.3f} (n={n}, {test})" if value is not None else f"none (n={n}, {test})"

        lines = [
            f"headroom, the baseline on {self.n_dev} dev examples before the first optimizer call: {self.metric} = "
            f"{self.dev:.3f}; answers the filter could not read: {self.unread} of {self.n_dev} "
            f"({self.unread / max(self.n_dev, 1):.0%}); different answers: {self.distinct}",
            f"  the smallest gain the splits can show at alpha {self.alpha:g}: dev "
            f"{gain(self.dev_gain, self.n_dev, 'one-sided sign test, as --accept paired')}, test "
            f"{gain(self.test_gain, self.n_test, 'two-sided exact McNemar, as the verdict')}"
            + ("" if self.binary else " (for 0/1 metrics; this metric is graded)"),
            f"  errors: {self.errors} of {self.n_dev} ({self.error_rule})",
        ]
        if self.binary and self.commonest_count:  # exact-match-like: one answer every time scores its share
            lines.append(f"  the commonest gold answer on dev, {self.commonest!r}, is {self.commonest_count} of "
                         f"{self.n_dev}: giving it every time would score {self.commonest_count / self.n_dev:.3f}")
        return "\n".join(lines + self.warnings(higher_is_better))
