"""`optimize`: a search run end to end, from the command line or from Python.

Finds the task and loads the target once (`session`), runs the rounds of the chosen method, writes the
artifact, a checkpoint and a readable report after every round, then evaluates the baseline and the best
prompt once each on the same held-out test documents through lm-eval (`evaluation`), compares them, and
writes the best prompt as a plain lm-eval task beside the artifact (`tasks.export`).
"""

from __future__ import annotations

import json
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

from lm_eval_abo import evaluation, metaprompts, report, stats, store
from lm_eval_abo.config import OptimizeConfig
from lm_eval_abo.errors import AboError
from lm_eval_abo.headroom import Headroom
from lm_eval_abo.files import append_line, dump_json, read_json, write_text_atomic, write_texts_atomic
from lm_eval_abo.cost.ledger import Budget
from lm_eval_abo.lock import FolderLock
from lm_eval_abo.optimizers import METHODS
from lm_eval_abo.optimizers.search import Search, SearchState
from lm_eval_abo.cost.projection import Projection, fits, project
from lm_eval_abo.session import Session, attach_models, model_class, plan_session
from lm_eval_abo.cost.target import TargetFailed
from lm_eval_abo.tasks import export

# A file the run could not write (a full disk, a folder made read-only; sqlite: lm-eval's target cache)
WRITE_ERRORS = (OSError, sqlite3.OperationalError)


@dataclass
class Outcome:
    run_dir: Path
    artifact: Path
    results: Path | None  # lm-eval results JSON of the best prompt on test
    artifact_data: store.Artifact
    state: SearchState  # the search as it ended


class Run:
    """The files of one run directory: <output>/<task>/<method>/."""

    def __init__(self, config: OptimizeConfig):
        self.dir = Path(config.output) / config.task / config.method
        self.artifact = self.dir / "best.yaml"
        self.state = self.dir / "state.json"
        self.report = self.dir / "report.md"
        self.results = self.dir / "results"
        self.export_name = config.export_name or export.default_name(config.task)

    def calls_file(self, round_no: int) -> Path:
        """The optimizer calls of a round, each as rendered and answered (JSON Lines)."""
        return self.dir / "metaprompts" / f"round-{round_no}.jsonl"

    def saved_rounds(self) -> str:
        """What a failed run kept, and how to continue it."""
        if not self.state.exists():
            return "no round was completed"
        done = read_json(self.state)["state"]["round"]
        saved = f"rounds 0-{done} are" if done else "round 0 is"
        return f"{saved} saved in {self.dir}; rerun with --resume to continue from there"

    def unwritable(self, error: OSError | sqlite3.Error) -> AboError:
        """A write that failed (a full disk, a folder made read-only), with what the run kept."""
        if not isinstance(error, OSError):
            what = f"lm-eval's target cache (--use_cache) cannot be written: {error}"
        elif error.filename:
            what = f"cannot write {error.filename}: {error.strerror or error}"
        else:
            what = f"cannot write in {self.dir}: {error.strerror or error}"
        return AboError(f"{what}; {self.saved_rounds()}")


def settings_of(config: OptimizeConfig, session: Session) -> dict:
    """How the run was configured, as the artifact records it (enough to rebuild its splits)."""
    return {
        "rounds": config.rounds, "beam": config.beam, "minibatch": config.minibatch, "method_args": config.method_args,
        "seed": config.seed, "train_limit": config.train_limit, "dev_limit": config.dev_limit,
        "test_limit": config.test_limit, "accept": config.accept, "alpha": config.alpha, "selection": config.selection,
        "no_copy": config.no_copy, "sampling_temperature": config.sampling_temperature, **config.harness().recorded(),
        "metric": session.bridge.metric_key, "answer_format": session.bridge.answer_format,
    }


def artifact_of(config: OptimizeConfig, session: Session, state: SearchState, splits: dict, started: float,
                plan: Projection) -> store.Artifact:
    best, baseline, bridge = state.best, state.nodes[0], session.bridge
    return store.Artifact(
        task=config.task, method=config.method, prompt=best.prompt,
        target={"model": config.model, "model_args": config.redacted("model_args")},
        optimizer={"model": config.optimizer, "args": config.redacted("optimizer_args")},
        scores={"dev": {"metric": bridge.metric_key, "value": best.dev, "stderr": best.dev_stderr, "n": best.dev_n},
                "baseline_dev": {"metric": bridge.metric_key, "value": baseline.dev, "n": baseline.dev_n}},
        splits=dict(splits), carved=session.splits.carved(), trace=state.trace,
        usage={**state.ledger.to_dict(), "prices": plan.prices, "projection": plan.to_dict(),
               "seconds": round(time.time() - started, 1), **_phase_seconds(state.trace), "stopped": state.stopped},
        templates=metaprompts.hashes(state.templates),
        settings=settings_of(config, session),
    )


def optimize(config: OptimizeConfig, out=None, lm=None) -> Outcome | None:
    """Run the search, the final test evaluation and the export; returns None for a dry run.
    `out` receives the lines to show (default: printed above any progress bars); `lm` is an
    already loaded lm-eval model to reuse. The run directory is locked while the run writes there."""
    from tqdm import tqdm

    out = out or tqdm.write
    config = config.resolved()
    run = Run(config)
    if config.dry_run:
        return _optimize(config, run, out, lm)
    with FolderLock(run.dir, "optimize run", out):  # before the first read of an earlier run
        return _optimize(config, run, out, lm)


def _optimize(config: OptimizeConfig, run: Run, out, lm) -> Outcome | None:
    saved = _resume_state(config, run, out)
    model_class(config)  # a bad --model fails before anything is loaded
    reads_text = config.method if METHODS[config.method].needs_generation else None
    planned = plan_session(config, reads_text)
    plan = project(config, planned)
    out(report.projection_text(config, plan))

    started = time.time()
    budget = Budget(planned.ledger, config.max_cost, config.max_target_tokens, config.max_optimizer_calls,
                    reserve=plan.test.target, per_request=plan.per_request)
    session = attach_models(planned, lm, budget)

    def headroom(_baseline=None) -> None:
        found = Headroom.of(session.bridge, session.default_prompt, session.dev_indices, session.n_test, config.alpha)
        out(found.text(session.bridge.higher_is_better))
        if not config.dry_run:
            out(report.round_header())

    if config.dry_run:
        headroom()
        return None
    splits = session.split_ids()
    if saved and saved.get("splits", splits) != splits:
        raise AboError(f"--resume: the documents of {config.task}'s splits differ from those the run in {run.dir} used")
    state = SearchState.from_dict(saved["state"]) if saved else None
    dev_docs = session.bridge.docs("dev")

    def checkpoint(search_state, record) -> None:
        texts = {}
        if search_state.beam:
            texts[run.artifact] = store.text(artifact_of(config, session, search_state, splits, started, plan))
            texts[run.report] = report.run_report(config, search_state, dev_docs, session.bridge)
        # the state last: a round counts as saved once its state is
        texts[run.state] = dump_json({"config": config.fingerprint(), "splits": splits, "state": search_state.to_dict()})
        write_texts_atomic(texts)

    def announce(record) -> None:
        out(report.round_row(record))
        if record.get("notes"):
            out(report.notes_text(record))
        for table in report.diagnosis_tables(record):
            out(table)

    if state:  # a resumed run has its baseline: the rounds go on under their header
        out(report.round_header())
    ctx = session.context(run_dir=run.dir)
    ctx.record_call = lambda call: append_line(run.calls_file(call["round"]), json.dumps(call, ensure_ascii=False))
    search = Search(METHODS[config.method], ctx, config.beam, session.dev_indices, config.minibatch,
                    config.patience, config.accept, config.alpha, config.selection, bool(config.no_copy))
    try:
        state = search.run(config.rounds, state, checkpoint, announce, on_baseline=headroom)
    except TargetFailed as e:
        raise AboError(f"{e}; {run.saved_rounds()}") from e
    except WRITE_ERRORS as e:
        raise run.unwritable(e) from e
    if not state.beam:
        raise AboError(f"stopped before any prompt was scored: {state.stopped}")
    if state.stopped:
        out(f"search stopped early: {state.stopped}; the best prompt so far is kept")
    try:
        final = finish(config, session, state, run, splits, started, plan, out)
    except WRITE_ERRORS as e:
        raise run.unwritable(e) from e
    return Outcome(run.dir, run.artifact, run.dir / final.scores["test"]["results_file"], final, state)


def finish(config: OptimizeConfig, session: Session, state: SearchState, run: Run, splits: dict, started: float,
           plan: Projection, out) -> store.Artifact:
    """The baseline and the best prompt on the test split, their comparison, the export, the last artifact."""
    best, baseline = state.best, state.nodes[0]
    final = artifact_of(config, session, state, splits, started, plan)
    store.save(final, run.artifact)  # the prompt stands before the test evaluation, also after a resume
    provenance = provenance_of(final, run.artifact, session.n_test)
    try:
        untouched = None if best.key == baseline.key else evaluation.evaluate(  # first: the newest results are the best's
            session, baseline.prompt, run.results / "baseline",
            {**provenance, "method": "baseline", "source": "baseline", "prompt_sha256": baseline.prompt.sha256()})
        tested = evaluation.evaluate(session, best.prompt, run.results / "best", provenance)
        untouched = untouched or tested
    except TargetFailed as e:
        raise AboError(f"{e} during the test evaluation; {run.saved_rounds()}") from e
    comparison = stats.compare(untouched.per_doc, tested.per_doc, untouched.correct, tested.correct, config.seed)
    test_ids = splits["test"]
    final.scores["test"] = {**tested.score, "results_file": str(tested.results.relative_to(run.dir)),
                            **evaluation.answer_counts(tested.answers, tested.unread)}
    final.scores["baseline_test"] = {**untouched.score, "results_file": str(untouched.results.relative_to(run.dir)),
                                     **evaluation.answer_counts(untouched.answers, untouched.unread)}
    final.scores["test_comparison"] = {**comparison.to_dict(), "fixed": [test_ids[i] for i in comparison.fixed],
                                       "broken": [test_ids[i] for i in comparison.broken],
                                       "verdict": comparison.verdict(session.bridge.higher_is_better)}
    test_usage = tested.usage if untouched is tested else tested.usage.plus(untouched.usage)
    final.usage.update(state.ledger.to_dict(), test=test_usage.to_dict())  # the target's side now holds the test too
    final.usage["test_seconds"] = round(tested.seconds + (untouched.seconds if untouched is not tested else 0), 1)
    try:
        final.export = export_plain_task(session, best.prompt, run.dir, run.export_name, provenance)
    except AboError as e:
        out(f"warning: no plain lm-eval task written: {e}")
        final.export = {"error": str(e)}
    store.save(final, run.artifact)
    write_text_atomic(run.report, report.run_report(config, state, session.bridge.docs("dev"), session.bridge, final,
                                                    session.bridge.docs("test")))
    out(tested.table)
    out(report.final_text(final, run.artifact, tested.results, run.dir))
    if not fits(state.ledger, config):
        out(f"warning: the run used more than its caps allow ({report.ledger_text(final.usage)}): the test evaluation "
            "cost more than projected")
    return final


def provenance_of(artifact: store.Artifact, path: Path, test_docs: int) -> dict:
    """What lm-eval's results of a prompt record about it (`configs.<task>.metadata.abo`)."""
    return {"task": artifact.task, "method": artifact.method, "source": str(path),
            "prompt_sha256": artifact.prompt.sha256(), "test_docs": test_docs}


def export_plain_task(session: Session, prompt, out_dir: Path, name: str, provenance: dict) -> dict:
    """The prompt as a plain lm-eval task in `out_dir`, checked (removed again if the check fails); what
    the artifact records of it."""
    try:
        export.write(session, prompt, out_dir, name, provenance)
        checked = export.verify(session, prompt, out_dir, name)
    except AboError:
        export.remove(out_dir, name)
        raise
    return {"task": name, "yaml": f"{name}.yaml", "checked_documents": checked}


def export_artifact(artifact_path: str | Path, out_dir: str | Path | None, name: str | None, harness) -> tuple[Path, int]:
    """`lm-eval-abo export lm-eval`: an artifact's prompt as the plain task its run wrote (on the run's
    held-out test documents); returns the YAML's path and the documents checked."""
    from lm_eval_abo.session import artifact_session

    artifact_path = Path(artifact_path)
    artifact = store.load(artifact_path)
    session = artifact_session(artifact, harness)
    out_dir = Path(out_dir) if out_dir else artifact_path.parent
    name = name or artifact.export.get("task") or export.default_name(artifact.task)
    done = export_plain_task(session, artifact.prompt, out_dir, name, provenance_of(artifact, artifact_path, session.n_test))
    return out_dir / done["yaml"], done["checked_documents"]


def _phase_seconds(trace: list[dict]) -> dict:
    """The search's wall time by phase, summed over its rounds."""
    return {key: round(sum(r.get(key, 0.0) for r in trace), 1) for key in ("optimizer_seconds", "target_seconds")}


def _resume_state(config: OptimizeConfig, run: Run, out) -> dict | None:
    """The saved run to continue (its state and splits), after checking it may be continued."""
    if not run.state.exists():
        if config.resume:
            out(f"nothing to resume in {run.dir}: starting a new run")
        return None
    if not config.resume:
        if config.dry_run:
            return None
        raise AboError(f"{run.dir} holds an earlier run; pass --resume to continue it, or choose another --output")
    saved = read_json(run.state)
    differs = [k for k, v in config.fingerprint().items() if saved["config"].get(k) != v]
    if differs:
        raise AboError(f"--resume: the run in {run.dir} was made with other settings ({', '.join(differs)})")
    saved["state"]["stopped"] = None  # e.g. a budget stop: resuming with a larger budget continues
    out(f"resuming {run.dir} after round {saved['state']['round']}")
    return saved
