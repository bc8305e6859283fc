"""`optimize`: a search run end to end, from the command line or from Python.

Unpacks the settings at the door (`session`), finds the task and loads the target once, projects the
cost and shows the baseline's headroom before any optimizer call, runs the rounds of the chosen method in
the one search loop, writes the artifact, a checkpoint and a readable report after every round, then
evaluates the baseline and the best prompt once each on the same held-out test documents through lm-eval
(`evaluation`), compares them, and writes the best prompt as a plain lm-eval task beside the artifact.
"""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

from lm_eval_abo.artifact import store
from lm_eval_abo.config import OptimizeConfig
from lm_eval_abo.cost.ledger import Budget
from lm_eval_abo.cost.target import TargetFailed
from lm_eval_abo.infra import metaprompts
from lm_eval_abo.infra.errors import AboError
from lm_eval_abo.infra.files import dump_json, read_json, write_text_atomic, write_texts_atomic
from lm_eval_abo.infra.lock import FolderLock
from lm_eval_abo.infra.redact import redact_arg_string
from lm_eval_abo.optimizers import selection
from lm_eval_abo.optimizers.result import SearchResult, SearchState
from lm_eval_abo.optimizers.search import Search
from lm_eval_abo.optimizers.stopping import AnyOf, MaxRounds, Patience
from lm_eval_abo.reports import run_report
from lm_eval_abo.run import evaluation
from lm_eval_abo.run.export import export_plain_task, provenance_of
from lm_eval_abo.run.folder import RunFolder
from lm_eval_abo.run.headroom import Headroom
from lm_eval_abo.run.projection import Projection, joint, project
from lm_eval_abo.run.session import Session, attach_models, caps_of, plan_session, prices_of, resolve_run, target_of

# A file the run could not write (a full disk, a folder made read-only; sqlite: lm-eval's target cache)
WRITE_ERRORS = (OSError, sqlite3.OperationalError)


@dataclass
class Outcome:
    run_dir: Path
    artifact: Path
    results: Path | None  # lm-eval results JSON of the best prompt on test
    artifact_data: store.Artifact
    result: SearchResult  # the search as it ended


def heading_of(config: OptimizeConfig) -> run_report.Heading:
    if config.targets:  # several: the objective over them, then each
        model = f"the {config.objective} of {len(config.targets)}"
        args = "; ".join(f"{label}: {m} {redact_arg_string(a)}".strip() for label, m, a, _ in config.targets)
        return run_report.Heading(config.method, config.task, model, args, config.optimizer, config.rounds, config.beam)
    return run_report.Heading(config.method, config.task, config.model, redact_arg_string(config.model_args),
                              config.optimizer, config.rounds, config.beam)


def settings_of(config: OptimizeConfig, session: Session) -> dict:
    """How the run was configured, as the artifact records it (enough to rebuild its splits)."""
    return {
        "rounds": config.rounds, "beam": config.beam, "minibatch": config.minibatch, "candidates": config.candidates,
        "method_args": config.method_args,
        "seed": config.seed, "train_limit": config.train_limit, "dev_limit": config.dev_limit,
        "test_limit": config.test_limit, "accept": config.accept, "alpha": config.alpha, "selection": config.selection,
        "race_alpha": config.race_alpha,
        "no_copy": config.no_copy, "sampling_temperature": config.sampling_temperature, **config.harness().recorded(),
        "metric": session.bridge.metric_key, "error_threshold": config.error_threshold,
        "errors": session.bridge.measure.describe(), "answer_format": session.bridge.answer_format,
        **({"objective": config.objective} if config.targets else {}),
    }


def _targets(config: OptimizeConfig) -> dict:
    """The targets of a run with several, and the objective over their dev scores (nothing for one target)."""
    if not config.targets:
        return {}
    return {"objective": config.objective,
            "targets": [{"label": label, "model": model, "model_args": redact_arg_string(args)}
                        for label, model, args, _ in config.targets]}


def artifact_of(config: OptimizeConfig, session: Session, result: SearchResult, splits: dict, started: float,
                plan: Projection) -> store.Artifact:
    best, baseline, bridge = result.best, result.baseline, session.bridge
    return store.Artifact(
        task=config.task, method=config.method, prompt=best.prompt,
        target={"model": config.model, "model_args": config.redacted("model_args"), **_targets(config)},
        optimizer={"model": config.optimizer, "args": config.redacted("optimizer_args")},
        scores={"dev": {"metric": bridge.metric_key, "value": best.dev, "stderr": best.dev_stderr, "n": best.dev_n},
                "baseline_dev": {"metric": bridge.metric_key, "value": baseline.dev, "n": baseline.dev_n}},
        splits=dict(splits), carved=bridge.splits.carved(), trace=[r.to_dict() for r in result.rounds],
        usage={**result.ledger.to_dict(), "prices": plan.prices, "projection": plan.to_dict(), **_graders(result),
               "seconds": round(time.time() - started, 1), **_phase_seconds(result), "stopped": result.stopped},
        templates=metaprompts.hashes(result.templates),
        settings=settings_of(config, session),
    )


def search_of(config: OptimizeConfig, session: Session, method, params, run: RunFolder) -> Search:
    """The loop with the strategies the flags name."""
    ctx = session.context(params, record=run.record_call, engine_dir=run.engine)
    dev_scoring = selection.Racing(config.race_alpha, config.seed) if config.selection == "racing" else selection.FullDev()
    acceptance = selection.Paired(config.alpha) if config.accept == "paired" else selection.ByScore()
    return Search(method, ctx, bridge=session.bridge, ledger=session.ledger, beam=config.beam,
                  minibatch=config.minibatch, stop=AnyOf((Patience(config.patience), MaxRounds(config.rounds))),
                  dev_scoring=dev_scoring, acceptance=acceptance, alpha=config.alpha, no_copy=bool(config.no_copy))


def plan_run(config: OptimizeConfig, method, params) -> tuple[Session, Projection]:
    """The task built and split, and the run's projection, without loading any model (`config` resolved)."""
    target_of(config).backend()  # a bad --model fails before anything is loaded
    planned = plan_session(config, config.method if method.needs_generation else None)
    for spec in planned.specs.values():
        spec.backend()
    cap = config.optimizer_args.get("max_tokens") or config.optimizer_args.get("max_completion_tokens")
    plans = {label: project(each, method, params, prices_of(config, label or None), config.optimizer, cap)
             for label, each in planned.each()}
    return planned, joint(plans) if planned.specs else plans[""]


def finished(config: OptimizeConfig) -> Outcome | None:
    """The outcome of the run `config` names, read from its folder, once it has been evaluated on test."""
    run = RunFolder(config.output, config.task, config.method, config.export_name)
    if not run.artifact.exists() or not run.state.exists():
        return None
    artifact = store.load(run.artifact)
    if "test" not in artifact.scores:
        return None
    result = SearchResult.from_state(SearchState.from_dict(read_json(run.state)["state"]))
    return Outcome(run.dir, run.artifact, run.dir / artifact.scores["test"]["results_file"], artifact, result)


def optimize(config: OptimizeConfig, out=None, lm=None) -> Outcome | None:
    """Run the search, the final test evaluation and the export; returns None for a dry run.
    `out` receives the lines to show (default: printed above any progress bars); `lm` is an
    already loaded lm-eval model to reuse. The run directory is locked while the run writes there."""
    from tqdm import tqdm

    out = out or tqdm.write
    config, method, params = resolve_run(config)
    run = RunFolder(config.output, config.task, config.method, config.export_name)
    if config.dry_run:
        return _optimize(config, method, params, run, out, lm)
    with FolderLock(run.dir, "optimize run", out):  # before the first read of an earlier run
        return _optimize(config, method, params, run, out, lm)


def _optimize(config: OptimizeConfig, method, params, run: RunFolder, out, lm) -> Outcome | None:
    saved = run.saved(config.fingerprint(), config.resume, config.dry_run, out)
    planned, plan = plan_run(config, method, params)
    caps = caps_of(config)
    if caps.max_cost is not None and plan.total.grader.calls and not plan.total.grader.cost_known:
        raise AboError("--max-cost needs the grader's price, and litellm's cost map has none for the task's grader model: "
                       "choose a priced grader (--metadata abo_grader) or drop --max-cost")
    out(run_report.projection_text(heading_of(config), plan, caps))

    started = time.time()
    budget = Budget(planned.ledger, caps, reserve=plan.test.target, per_request=plan.per_request,
                    grader_reserve=plan.test.grader, grader_per_request=plan.grader_per_request)
    session = attach_models(planned, config, lm, budget)

    def headroom(_baseline=None) -> None:
        found = Headroom.of(session.bridge, session.default_prompt, session.dev_indices, session.n_test, config.alpha)
        out(found.text(session.bridge.higher_is_better))
        if not config.dry_run:
            out(run_report.round_header())

    if config.dry_run:
        headroom()
        return None
    splits = session.split_ids()
    if saved and saved.get("splits", splits) != splits:
        raise AboError(f"--resume: the documents of {config.task}'s splits differ from those the run in {run.dir} used")
    state = SearchState.from_dict(saved["state"]) if saved else None
    dev_docs = session.bridge.docs("dev")

    def checkpoint(search_state: SearchState, record) -> None:
        texts = {}
        if search_state.beam:
            result = SearchResult.from_state(search_state)
            texts[run.artifact] = store.text(artifact_of(config, session, result, splits, started, plan))
            texts[run.report] = run_report.run_report(heading_of(config), result, dev_docs, session.bridge.metric_key)
        # the state last: a round counts as saved once its state is
        texts[run.state] = dump_json({"config": config.fingerprint(), "splits": splits, "state": search_state.to_dict()})
        write_texts_atomic(texts)

    def announce(record) -> None:
        out(run_report.round_row(record))
        if record.notes:
            out(run_report.notes_text(record))
        for table in run_report.diagnosis_tables(record):
            out(table)

    if state:  # a resumed run has its baseline: the rounds go on under their header
        out(run_report.round_header())
    try:
        state = search_of(config, session, method, params, run).run(state, checkpoint, announce, on_baseline=headroom)
    except TargetFailed as e:
        raise AboError(f"{e}; {run.saved_rounds()}") from e
    except WRITE_ERRORS as e:
        raise run.unwritable(e) from e
    if not state.beam:
        raise AboError(f"stopped before any prompt was scored: {state.stopped}")
    if state.stopped:
        out(f"search stopped early: {state.stopped}; the best prompt so far is kept")
    result = SearchResult.from_state(state)
    try:
        final = finish(config, session, result, run, splits, started, plan, out)
    except WRITE_ERRORS as e:
        raise run.unwritable(e) from e
    return Outcome(run.dir, run.artifact, run.dir / final.scores["test"]["results_file"], final, result)


def finish(config: OptimizeConfig, session: Session, result: SearchResult, run: RunFolder, splits: dict, started: float,
           plan: Projection, out) -> store.Artifact:
    """The baseline and the best prompt on the test split, their comparison, the export, the last artifact."""
    best, baseline = result.best, result.baseline
    final = artifact_of(config, session, result, splits, started, plan)
    store.save(final, run.artifact)  # the prompt stands before the test evaluation, also after a resume
    provenance = provenance_of(final, run.artifact, session.n_test)
    tests = {label: _tested(each, result, run, run.results / label if label else run.results, provenance)
             for label, each in session.each()}
    untouched, tested = tests[""] if "" in tests else _pooled(tests, config.objective, session.bridge.higher_is_better)
    final.scores.update(_test_scores(untouched, tested, splits["test"], run.dir, config.seed, session.bridge.higher_is_better))
    if session.specs:  # each target's own, the dev scores of the baseline and the best prompt on it too
        dev = session.bridge.score([baseline.prompt, best.prompt], "dev", session.dev_indices, capped=False)
        final.scores["per_model"] = {
            label: {"dev": _dev(dev[1].per_model[label], session.bridge.metric_key),
                    "baseline_dev": _dev(dev[0].per_model[label], session.bridge.metric_key),
                    **_test_scores(*tests[label], splits["test"], run.dir, config.seed, session.bridge.higher_is_better)}
            for label in session.specs}
    test_usage = tested.usage if untouched is tested else tested.usage.plus(untouched.usage)
    final.usage.update(session.ledger.to_dict(), test=test_usage.to_dict())  # the target's side now holds the test too
    final.usage["test_seconds"] = round(tested.seconds + (untouched.seconds if untouched is not tested else 0), 1)
    try:
        final.export = export_plain_task(session.bridge, best.prompt, run.dir, run.export_name, provenance)
    except AboError as e:
        out(f"warning: no plain lm-eval task written: {e}")
        final.export = {"error": str(e)}
    store.save(final, run.artifact)
    write_text_atomic(run.report, run_report.run_report(heading_of(config), result, session.bridge.docs("dev"),
                                                        session.bridge.metric_key, final, session.bridge.docs("test")))
    out(tested.table)
    out(run_report.final_text(final, run.artifact, tested.results, run.dir))
    if not caps_of(config).fit(session.ledger):
        out(f"warning: the run used more than its caps allow ({run_report.ledger_text(final.usage)}): the test "
            "evaluation cost more than projected")
    return final


def _tested(session: Session, result: SearchResult, run: RunFolder, folder: Path, provenance: dict):
    """The baseline and the best prompt on the session's target on the test split (the best last: the newest
    results are its), lm-eval's results in `folder`."""
    best, baseline = result.best, result.baseline
    try:
        untouched = None if best.key == baseline.key else evaluation.evaluate(
            session, baseline.prompt, folder / "baseline",
            {**provenance, "method": "baseline", "source": "baseline", "prompt_sha256": baseline.prompt.sha256()})
        tested = evaluation.evaluate(session, best.prompt, folder / "best", provenance)
    except TargetFailed as e:
        raise AboError(f"{e} during the test evaluation; {run.saved_rounds()}") from e
    return untouched or tested, tested


def _pooled(tests: dict, objective: str, higher_is_better: bool):
    """The baseline's and the best prompt's test runs on several targets, each pooled (`evaluation.pooled`)."""
    tested = evaluation.pooled({label: t for label, (_, t) in tests.items()}, objective, higher_is_better)
    same = all(u is t for u, t in tests.values())  # the best is the baseline
    return tested if same else evaluation.pooled({label: u for label, (u, _) in tests.items()}, objective,
                                                 higher_is_better), tested


def _test_scores(untouched, tested, test_ids: list[str], run_dir: Path, seed: int, higher_is_better: bool) -> dict:
    """The test scores of the baseline and the best prompt and their paired comparison, as the artifact keeps
    them (pooled over several targets, a document is "label:id")."""
    comparison = evaluation.compared(untouched, tested, seed)

    def named(key) -> str:
        label, _, i = str(key).rpartition(":")
        return f"{label}:{test_ids[int(i)]}" if label else test_ids[int(i)]

    return {
        "test": {**tested.score, "results_file": str(tested.results.relative_to(run_dir)),
                 **evaluation.answer_counts(tested.answers, tested.unread)},
        "baseline_test": {**untouched.score, "results_file": str(untouched.results.relative_to(run_dir)),
                          **evaluation.answer_counts(untouched.answers, untouched.unread)},
        "test_comparison": {**comparison.to_dict(), "fixed": [named(i) for i in comparison.fixed],
                            "broken": [named(i) for i in comparison.broken],
                            "verdict": comparison.verdict(higher_is_better)},
    }


def _dev(score, metric: str) -> dict:
    return {"metric": metric, "value": score.value, "stderr": score.stderr, "n": score.n}


def _graders(result: SearchResult) -> dict:
    """The models that graded the run's replies (a metric that asks a model), by their litellm strings."""
    if not result.ledger.grader.calls:
        return {}
    from lm_eval_abo.promptfoo import grader

    return {"grader_models": grader.current().models()}


def _phase_seconds(result: SearchResult) -> dict:
    """The search's wall time by phase, summed over its rounds."""
    return {key: round(sum(getattr(r, key) or 0.0 for r in result.rounds), 1)
            for key in ("optimizer_seconds", "target_seconds")}
