"""The final evaluation: a prompt on the held-out test documents, once, through lm-eval's `simple_evaluate`
exactly as `lm_eval` runs a task, with lm-eval's results JSON and samples written to the run directory."""

from __future__ import annotations

import errno
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import reduce
from pathlib import Path

from lm_eval_abo.artifact.prompt import Prompt
from lm_eval_abo.cost.ledger import Usage
from lm_eval_abo.cost.target import target_calls
from lm_eval_abo.infra import stats
from lm_eval_abo.infra.files import write_text_atomic
from lm_eval_abo.infra.redact import redact_arg_string, redacting_tracker
from lm_eval_abo.panel import combined
from lm_eval_abo.reports.results import number
from lm_eval_abo.tasks import fields
from lm_eval_abo.tasks.built import quiet_lm_eval


@dataclass
class TestRun:
    score: dict  # metric, value, stderr, n
    results: Path  # lm-eval's results JSON
    per_doc: dict[int, float]  # position in the test split -> the metric's value
    correct: dict[int, bool]  # position in the test split -> not an error
    items: dict[int, object]  # position in the test split -> the metric's item, as the aggregation takes it
    aggregate: Callable | None  # the metric's aggregation (None: the mean), which `compared` re-applies
    answers: dict[int, str]  # position in the test split -> the answer the task's filter read
    unread: set[int]  # positions whose reply the task's filter could not read an answer from
    arguments: list  # what lm-eval sent the target for each test document, in order
    usage: Usage  # the target's requests (cache hits included), tokens and cost
    seconds: float
    table: str  # lm-eval's results table


def evaluate(session, prompt: Prompt, results_dir: Path, provenance: dict) -> TestRun:
    """`prompt` on the test split; `provenance` goes to lm-eval's results as `configs.<task>.metadata.abo`."""
    from lm_eval import simple_evaluate
    from lm_eval.loggers import EvaluationTracker
    from lm_eval.utils import make_table

    bridge = session.bridge
    part, task = bridge.splits.test, bridge.task
    task_config = fields.task_config(bridge.base_config, prompt, task, part.split)
    task_config["metadata"] = {**(task_config.get("metadata") or {}), "abo": provenance}
    tracker = redacting_tracker(EvaluationTracker)(output_path=str(results_dir))
    before, reached, started = bridge.counter.usage.copy(), bridge.target_requests, time.time()
    with quiet_lm_eval(session.quiet), target_calls():
        results = simple_evaluate(
            model=bridge.counter, model_args=redact_arg_string(session.target_spec.model_args), tasks=[task_config],
            task_manager=bridge.manager, samples={task: list(part.indices)}, log_samples=True,
            use_cache=bridge.harness.use_cache, gen_kwargs=bridge.harness.gen_kwargs or None,
            evaluation_tracker=tracker, bootstrap_iters=1000, random_seed=session.seed,
            **bridge.harness.evaluate_kwargs(),
        )
    samples = results.pop("samples")
    position = {index: i for i, index in enumerate(part.indices)}
    rows = sorted((r for r in samples[task] if r["filter"] == bridge.filter_name), key=lambda r: r["doc_id"])
    found = {position[r["doc_id"]]: bridge.sample(r, "test", position[r["doc_id"]]) for r in rows}
    scored = {i: sample for i, (sample, _) in found.items()}
    unread = {i for i, no in zip(scored, bridge.unread(list(scored.values()))) if no}
    arguments = [list(r["arguments"]) for r in rows]
    bridge.counter.cache_hits(rows, reached)
    tracker.save_results_aggregated(results=results, samples=samples)
    tracker.save_results_samples(task_name=task, samples=samples[task])  # rewrites the rows it saves
    metrics, key = results["results"][task], bridge.metric_key
    return TestRun(
        score={"metric": key, "value": number(metrics.get(key)), "stderr": number(metrics.get(key.replace(",", "_stderr,", 1))),
               "n": int(results["n-samples"][task]["effective"])},
        results=_written(tracker, results_dir),
        per_doc={i: s.score for i, s in scored.items()},
        correct={i: s.correct for i, s in scored.items()},
        items={i: item for i, (_, item) in found.items()},
        aggregate=bridge.measure.aggregate,
        answers={i: s.answer for i, s in scored.items()},
        unread=unread,
        arguments=arguments,
        usage=bridge.counter.usage.minus(before),
        seconds=round(time.time() - started, 1),
        table=make_table(results),
    )


def compared(baseline: TestRun, new: TestRun, seed: int) -> stats.Comparison:
    """`new` against `baseline` on their common test documents, each aggregated as the task aggregates its
    metric: the difference is that of lm-eval's two reported scores (`stats.compare`)."""
    return stats.compare(baseline.items, new.items, baseline.correct, new.correct, seed, new.aggregate)


def pooled(runs: dict[str, TestRun], objective: str, higher_is_better: bool = True) -> TestRun:
    """One prompt's test runs on several targets (by label) as one: its score the objective over theirs (`panel`),
    its per-document results keyed "label:position", so a comparison pairs them on (model, document)."""
    first = next(iter(runs.values()))
    scores = [r.score for r in runs.values()]
    value, stderr = combined([s["value"] for s in scores], [s["stderr"] for s in scores], objective, higher_is_better)

    def keyed(part: str) -> dict:
        return {f"{label}:{i}": v for label, r in runs.items() for i, v in getattr(r, part).items()}

    return replace(first, score={**first.score, "value": value, "stderr": stderr, "n": min(s["n"] for s in scores)},
                   per_doc=keyed("per_doc"), correct=keyed("correct"), items=keyed("items"), answers=keyed("answers"),
                   unread={f"{label}:{i}" for label, r in runs.items() for i in r.unread},
                   arguments=[a for r in runs.values() for a in r.arguments],
                   usage=reduce(Usage.plus, [r.usage for r in runs.values()]), seconds=round(sum(r.seconds for r in runs.values()), 1),
                   table="\n".join(f"{label}:\n{r.table}" for label, r in runs.items()))


def answer_counts(answers: dict[int, str], unread: set[int] = frozenset()) -> dict:
    """How many different answers a prompt gave on the test documents, how many replies the task's filter
    could not read, and `one_answer` when it gave one alone to more than one document: its score is then
    that answer's share of the gold answers, whatever the prompt says."""
    found = set(answers.values())
    one = {"one_answer": next(iter(found))} if len(found) == 1 and len(answers) > 1 else {}
    return {"distinct_answers": len(found), "unread": len(unread), **one}


def _written(tracker, results_dir: Path) -> Path:
    """The results file lm-eval has just written. lm-eval logs a write that failed and goes on (leaving an
    empty or partial file); this removes what it left and stops the run, with the file system's reason (a
    full disk, a read-only folder)."""
    folder = Path(results_dir) / tracker.general_config_tracker.model_name_sanitized
    date = getattr(tracker, "date_id", "")
    path = folder / f"results_{date}.json"
    try:
        json.loads(path.read_text(encoding="utf-8"))
        return path
    except (OSError, ValueError):
        pass
    try:
        write_text_atomic(folder / ".written", "written\n").unlink()  # fails as lm-eval's write did, saying why
        error = OSError(errno.EIO, "lm-eval could not write its results file", str(path))
    except OSError as e:
        error = OSError(e.errno, e.strerror, str(path))
    for left in folder.glob(f"*_{date}.json*"):  # the results file and the samples, both of this evaluation
        left.unlink(missing_ok=True)
    raise error
