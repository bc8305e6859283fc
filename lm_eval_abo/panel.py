"""Several targets scored as one, for a prompt that must serve all of them: one bridge per target (each its
model, its lm-eval cache and its memo), and one combined `Score` per prompt, so the methods and the search
loop see a single score as with one target.

A combined score's value is the objective over the targets' values: their `mean`, or the worst of them
(`min`: the lowest, the highest where lower is better). Its samples are the union of the targets' samples,
each labelled with the target that answered it (`Sample.model`), so a method's train errors come from every
target and the meta-prompts name the model, and selection pairs results on (model, example)
(`Sample.key`). The per-target scores stay alongside (`Score.per_model`).
"""

from __future__ import annotations

import math
from dataclasses import replace

from lm_eval_abo.artifact.prompt import Prompt
from lm_eval_abo.infra.errors import AboError
from lm_eval_abo.scoring import Bridge, Score

OBJECTIVES = ("mean", "min")


def combine(values: list[float], objective: str, higher_is_better: bool = True) -> float:
    """The objective over the targets' values: their mean, or the worst (`min`; the highest where lower is
    better)."""
    if objective not in OBJECTIVES:
        raise AboError(f"--objective must be one of {', '.join(OBJECTIVES)}, got {objective!r}")
    if objective == "mean":
        return sum(values) / len(values)
    return min(values) if higher_is_better else max(values)


def combined(values: list[float], stderrs: list[float | None], objective: str, higher_is_better: bool = True
             ) -> tuple[float, float | None]:
    """The objective over the targets' values, and its standard error: the mean's (the targets taken as
    independent), or the worst target's."""
    value = combine(values, objective, higher_is_better)
    if objective == "min":
        return value, stderrs[values.index(value)]
    return value, None if None in stderrs else math.sqrt(sum(e * e for e in stderrs)) / len(stderrs)


class Panel:
    """The task through several targets (`bridges`, by label, the first standing for the task) under one
    `objective`: the `TaskView` of a run with several targets. Everything but scoring is the first bridge's
    (the task, its splits, filter and metric are the same for every target)."""

    def __init__(self, bridges: dict[str, Bridge], objective: str = "mean"):
        if len(bridges) < 2:
            raise AboError(f"a panel needs two or more targets, got {len(bridges)}")
        combine([0.0], objective)  # an unknown objective fails here
        self.bridges, self.objective = dict(bridges), objective
        self.first = next(iter(self.bridges.values()))

    @property
    def models(self) -> tuple[str, ...]:
        return tuple(self.bridges)

    def score(self, prompts: list[Prompt], split: str, indices: list[int], capped: bool = True) -> list[Score]:
        """Each prompt on the given examples on every target, combined; checked against the budget first for
        all the targets' requests together (if `capped`)."""
        budget = self.first.budget
        if capped and budget is not None:
            budget.target_pass(sum(b.pending(prompts, split, indices) for b in self.bridges.values()))
        scored = {label: b.score(prompts, split, indices, capped=False) for label, b in self.bridges.items()}
        return [self.combined({label: found[j] for label, found in scored.items()}) for j in range(len(prompts))]

    def combined(self, scores: dict[str, Score]) -> Score:
        """One score of the targets' scores of a prompt (see the module's doc and `combined`)."""
        labelled = {m: replace(s, samples=[replace(x, model=m) for x in s.samples]) for m, s in scores.items()}
        value, stderr = combined([s.value for s in labelled.values()], [s.stderr for s in labelled.values()],
                                 self.objective, self.first.higher_is_better)
        return Score(value=value, stderr=stderr, n=min(s.n for s in labelled.values()),
                     samples=[x for s in labelled.values() for x in s.samples], per_model=labelled)

    @property
    def target_seconds(self) -> float:
        return sum(b.target_seconds for b in self.bridges.values())

    @property
    def target_requests(self) -> int:
        return sum(b.target_requests for b in self.bridges.values())

    def __getattr__(self, name):
        if name in ("bridges", "first"):  # not yet set: no recursion while unpickling
            raise AttributeError(name)
        return getattr(self.first, name)
