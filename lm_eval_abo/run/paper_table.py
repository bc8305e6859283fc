"""`lm-eval-abo paper-table`: the paper's Table 2 layout for one target/optimizer pair.

Per task, every row is a prompt evaluated once on the same held-out test examples through lm-eval, and
compared with the first row's (zero-shot CoT, the task's own prompt) example by example:
  zero-shot CoT · few-shot CoT (the chain-of-thought exemplars lm-eval ships, where it has them) ·
  demonstrations only (the baseline prompt with verified chain-of-thought demonstrations written by the
  optimizer, as DSPy's BootstrapFewShot does: with ABO step 0 it splits ABO's gain into "has
  demonstrations" and "has a procedure") · the best APO method (the five methods, chosen by dev) ·
  ABO after step 0, 1, 2 · ABO without demonstrations (ABO's best prompt with its demonstrations taken
  out, re-scored) · ABO with hint=fallback and with hint=never (the gold answer shown to retry the failed
  demonstrations, or never: two runs) · the ABO-ablation run (optimized without demonstrations from the start).
Every method gets the same rounds (2 unless --rounds says otherwise, so ABO's rows are steps 0-2 whatever
the preset), the same patience and the same --candidates. The budget (`budget_of`): --max-optimizer-calls,
--max-target-tokens and --max-cost are each method row's caps, the same for every row; the APO searches
of the best-APO row share that row's caps in equal parts, and the row's cost is the sum of all of them.
Without caps the rows compare at equal candidates (--candidates) or equal rounds, and the budget varies.
Every row names where its prompt came from (the baseline can win a beam), its caps, and carries the ledger
of what made it (the runs it names) plus its own test evaluation (optimizer calls and tokens, target
requests and tokens, the cost of each and of both) and seconds. `--seeds N` repeats the table with N seeds
and reports each row's spread.
The optimize runs of every task and seed are the cells of one grid (`run/grid`: `--executor local|ray`),
each cell with its row's caps; the rows are then evaluated here, and a failed run's rows are left out.
"""

from __future__ import annotations

import time
from dataclasses import asdict, replace
from pathlib import Path

from lm_eval_abo.artifact import store
from lm_eval_abo.config import OptimizeConfig
from lm_eval_abo.cost.ledger import BudgetExhausted, Caps, Ledger, total
from lm_eval_abo.infra.errors import AboError
from lm_eval_abo.infra.files import write_json, write_text_atomic
from lm_eval_abo.infra.lock import FolderLock
from lm_eval_abo.optimizers import resolve
from lm_eval_abo.reports.paper_table import budget_text, spread, table_markdown
from lm_eval_abo.reports.run_report import answers_text
from lm_eval_abo.run import evaluation
from lm_eval_abo.run.grid import run_grid
from lm_eval_abo.run.grid.shares import shares
from lm_eval_abo.run.optimize import finished
from lm_eval_abo.run.session import caps_of, open_session, resolve_run, target_of
from lm_eval_abo.tasks import cot_exemplars

APO_METHODS = ("ape", "apo", "apo-sum", "promptagent", "opro")
ROUNDS = 2  # the paper's ABO reports steps 0-2
HINTS = {"ABO hint=fallback": "abo", "ABO hint=never": "abo hint=never"}  # the hint ablation's rows and their runs


def _cumulative(result, upto: int) -> tuple[Ledger, float]:
    """The ledger and seconds of the rounds 0..upto of a run."""
    rounds = result.rounds[: upto + 1]
    return total(r.ledger for r in rounds), sum(r.seconds or 0.0 for r in rounds)


def caps_given(caps: Caps) -> dict:
    """The caps that are set, by their `OptimizeConfig` names."""
    return {name: value for name, value in asdict(caps).items() if value is not None}


def budget_of(config: OptimizeConfig, apo_methods) -> dict:
    """How the rows compare: each method row's caps (`--max-*`, the same for every row) and the part of them
    each APO search of the best-APO row gets (an equal part each, whole numbers rounded down, so the
    searches together keep to the row's caps); without caps, at equal candidates or equal rounds."""
    row = caps_of(config)
    apo = shares(row, [Ledger()] * len(apo_methods), Ledger())[0] if apo_methods else row  # equal parts
    if apo.max_optimizer_calls == 0 and row.max_optimizer_calls is not None:
        raise AboError(f"--max-optimizer-calls {row.max_optimizer_calls} leaves each of the {len(apo_methods)} APO "
                       f"searches no call: give at least {len(apo_methods)}, or fewer --apo-methods")
    regime = ("equal budget" if caps_given(row) else "equal candidates" if config.candidates else "equal rounds")
    return {"regime": regime, "row_caps": caps_given(row), "apo_search_caps": caps_given(apo),
            "apo_searches": len(apo_methods),
            "rounds": config.rounds, "patience": config.patience, "candidates": config.candidates}


def run_configs(config: OptimizeConfig, apo_methods, budget: dict) -> dict[str, OptimizeConfig]:
    """The optimize runs of a task's rows by name (`config` names the task and seed), each with its caps."""
    apo = Caps(**budget["apo_search_caps"])
    runs = {m: replace(config, method=m, **asdict(apo)) for m in apo_methods}
    runs["abo"] = replace(config, method="abo", method_args={"hint": "fallback"})
    runs["abo hint=never"] = replace(config, method="abo", method_args={"hint": "never"},
                                     output=str(Path(config.output) / "hint-never"))
    runs["abo-ablation"] = replace(config, method="abo-ablation")
    return runs


class Rows:
    """A task's rows: each prompt evaluated once on test, compared with the first one's."""

    def __init__(self, session, folder: Path, out, caps: Caps):
        self.session, self.folder, self.out, self.caps = session, folder, out, caps
        self.rows: list[dict] = []
        self.first: evaluation.TestRun | None = None

    def add(self, name: str, prompt, method: str, origin: str, made: Ledger | None = None, seconds: float = 0.0,
            detail: str = "", runs=(), method_args: dict | None = None) -> None:
        """A row: the prompt's test score, and the ledger of what made it (`made`: the runs `runs`, or a call
        made here, under the row's caps) plus its test evaluation."""
        task, seed = self.session.task_name, self.session.seed
        path = store.save(store.Artifact(task=task, method=method, prompt=prompt), self.folder / f"{name}.yaml")
        provenance = {"task": task, "method": method, "source": str(path), "prompt_sha256": prompt.sha256()}
        test = evaluation.evaluate(self.session, prompt, self.folder / "results" / name, provenance)
        caps, made = caps_given(self.caps) if made is not None else {}, made or Ledger()
        used = made.plus(Ledger(target=test.usage))
        row = {
            "task": task, "seed": seed, "row": name, "origin": origin, "detail": detail,
            "metric": test.score["metric"], "value": test.score["value"], "stderr": test.score["stderr"],
            "n": test.score["n"], "answers": evaluation.answer_counts(test.answers, test.unread),
            "optimizer_calls": used.optimizer.calls, "tokens": used.optimizer.tokens,
            "target_requests": used.target.calls, "target_tokens": used.target.tokens,
            "target_tokens_estimated": used.target.estimated, "cost_usd": used.cost_usd, "cost_known": used.cost_known,
            "optimizer_cost_usd": used.optimizer.cost_usd, "target_cost_usd": used.target.cost_usd,
            "usage": used.to_dict(), "made": made.to_dict(), "runs": [str(r) for r in runs],
            "caps": caps,
            **({"method_args": method_args} if method_args is not None else {}),
            "seconds": round(seconds + test.seconds, 1), "results": str(test.results),
        }
        if self.first is None:
            self.first = test
        else:
            c = evaluation.compared(self.first, test, seed)
            row.update(vs_baseline=c.difference, ci=list(c.interval), mcnemar_p=c.mcnemar_p, permutation_p=c.permutation_p)
        self.rows.append(row)
        self.out(f"{task} (seed {seed}): {name}: {test.score['value']:.3f} (n={test.score['n']}; "
                 f"{answers_text(row['answers'])})")


def run_rows(run) -> tuple[Ledger, float]:
    """What a whole optimize run used: its ledger and seconds."""
    return Ledger.from_dict(run.artifact_data.usage), run.artifact_data.usage["seconds"]


def _demonstrations_only(session, preset: str, out) -> tuple[list, str, Ledger, float]:
    """The control's demonstrations (made first, so the row's caps hold over its own calls alone), the row's
    detail, the ledger and seconds they took."""
    abo, abo_params = resolve("abo", preset, {})
    started, before = time.time(), session.ledger.snapshot()
    try:
        demos, counts = abo.demonstrations(session.context(abo_params), [], "demonstrations-only control", [])
        detail = f"{len(demos)} demonstrations ({counts})"
    except BudgetExhausted as e:
        demos, detail = [], f"no demonstrations: {e}"
        out(f"demonstrations only: {e}")
    return demos, detail, session.ledger.minus(before), time.time() - started


def task_rows(config: OptimizeConfig, apo_methods, lm, out, runs: dict) -> list[dict]:
    """A task's rows; `runs` holds the outcome of each of its optimize runs (`run_configs`' names; None where
    the run failed: its rows are left out)."""
    session = open_session(resolve_run(config)[0], lm)
    rows = Rows(session, Path(config.output) / config.task / "paper-table", out, caps_of(config))
    demos, demos_detail, demos_made, demos_seconds = _demonstrations_only(session, config.preset, out)
    default = session.bridge.default_prompt
    rows.add("zero-shot CoT", default, "zero-shot-cot", "baseline")
    exemplars = cot_exemplars(session.bridge.reference.config.metadata or {})
    if exemplars:
        rows.add("few-shot CoT", replace(default, demonstrations=exemplars), "few-shot-cot", "lm-eval's exemplars",
                 detail=f"{len(exemplars)} exemplars from lm-eval")
    rows.add("demonstrations only", replace(default, demonstrations=tuple(demos)), "demonstrations-only",
             "baseline + verified demonstrations", demos_made, demos_seconds, detail=demos_detail)

    apo = {m: runs[m] for m in apo_methods if runs.get(m)}
    if apo:  # the dev-best of the searches, at the cost of all of them
        best = max(apo, key=lambda m: apo[m].artifact_data.scores["dev"]["value"])
        dev = ", ".join(f"{m} {apo[m].artifact_data.scores['dev']['value']:.3f}" for m in apo)
        spent = [run_rows(run) for run in apo.values()]
        rows.add("best APO method", apo[best].artifact_data.prompt, best, apo[best].result.best.candidate.origin,
                 total(ledger for ledger, _ in spent), sum(seconds for _, seconds in spent),
                 detail=f"{best} (dev {dev}); cost of all {len(apo)} searches", runs=[r.run_dir for r in apo.values()])

    outcome = runs.get("abo")
    if outcome:
        run = outcome.result
        for record in run.rounds:  # the best prompt after each step, on test
            node = run.best_after(record)
            rows.add(f"ABO step {record.round}", node.prompt, "abo", node.candidate.origin,
                     *_cumulative(run, record.round), detail=f"dev {record.best.dev:.3f}", runs=[outcome.run_dir])
        best = run.best
        rows.add("ABO without demonstrations", replace(best.prompt, demonstrations=()), "abo", f"{best.candidate.origin}, "
                 "demonstrations taken out", *run_rows(outcome), detail="ABO's best prompt, re-scored without its demonstrations",
                 runs=[outcome.run_dir])
    for name, key in HINTS.items():  # ABO's best prompt with the answer shown to retry failed demonstrations, or never
        if runs.get(key):
            run = runs[key]
            verified = run.result.best.candidate.notes.get("demos_verified") or {}
            rows.add(name, run.artifact_data.prompt, "abo", run.result.best.candidate.origin, *run_rows(run),
                     detail=f"{len(run.artifact_data.prompt.demonstrations)} demonstrations, "
                     f"{verified.get('kept_with_answer', 0)} written with the answer shown",
                     runs=[run.run_dir], method_args=run.artifact_data.settings.get("method_args"))
    ablation = runs.get("abo-ablation")
    if ablation:
        rows.add("ABO-ablation run", ablation.artifact_data.prompt, "abo-ablation", ablation.result.best.candidate.origin,
                 *run_rows(ablation), detail="optimized without demonstrations from step 0", runs=[ablation.run_dir])
    return rows.rows


def paper_table(config: OptimizeConfig, tasks: list[str], apo_methods=APO_METHODS, seeds: int = 1, out=print,
                executor: str = "local", ray_address: str | None = None, lm=None) -> dict:
    """The table for `tasks`; its optimize runs are the cells of one grid on `executor` (`ray_address`), with
    `config`'s caps for each method row (`budget_of`). `lm`: an already loaded target (default: loaded from
    `config`). The result's "failed" lists the runs that failed (their rows are left out)."""
    if not tasks:
        raise AboError("--tasks: name at least one task")
    unknown = [m for m in apo_methods if m not in APO_METHODS]
    if unknown:
        raise AboError(f"--apo-methods: unknown {', '.join(unknown)}; known: {', '.join(APO_METHODS)}")
    # Re-running the command continues where it stopped; rows that evaluate a prompt an optimize run
    # already evaluated on test (the best APO and ABO prompts) are answered by the target cache.
    config = replace(config, resume=True, rounds=config.rounds if config.rounds is not None else ROUNDS,
                     use_cache=config.use_cache or str(Path(config.output) / "target-cache"))
    folder = Path(config.output)
    budget = budget_of(config, apo_methods)
    with FolderLock(folder, "paper-table", out):  # each optimize run also locks its own folder
        lm = lm or (target_of(config).load() if executor == "local" else None)  # shared by the local cells
        started = time.time()
        seeded = [replace(config, seed=config.seed + offset,
                          output=str(folder / f"seed-{config.seed + offset}") if seeds > 1 else config.output)
                  for offset in range(seeds)]
        out(budget_text(budget))
        planned = {(s.seed, task): run_configs(replace(s, task=task), apo_methods, budget)
                   for s in seeded for task in tasks}
        grid = run_grid([c for runs in planned.values() for c in runs.values()], folder, executor, ray_address,
                        resume=True, lm=lm, out=out)
        lm = lm or target_of(config).load()
        rows = []
        for s in seeded:
            for task in tasks:
                runs = {name: finished(c) for name, c in planned[s.seed, task].items()}
                rows += task_rows(replace(s, task=task), apo_methods, lm, out, runs)
        result = {
            "target": {"model": config.model}, "optimizer": config.optimizer, "preset": config.preset,
            "rounds": config.rounds, "patience": config.patience, "seeds": seeds, "budget": budget, "rows": rows,
            "spread": spread(rows) if seeds > 1 else [], "seconds": round(time.time() - started, 1),
            **({"failed": [r.to_dict() for r in grid.failed]} if grid.failed else {}),
        }
        write_json(folder / "paper_table.json", result)
        markdown = table_markdown(result)
        write_text_atomic(folder / "paper_table.md", markdown + "\n")
    out(markdown)
    out(f"\nwritten: {folder / 'paper_table.md'} and paper_table.json")
    if grid.failed:
        out(f"{len(grid.failed)} of {len(grid.reports)} runs failed (their rows are left out): see {folder / 'grid.md'}")
    return result
