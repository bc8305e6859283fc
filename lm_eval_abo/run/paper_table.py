"""`lm-eval-abo paper-table`: the paper's Table 2 layout for one target/optimizer pair.

Per task, every row is a prompt evaluated once on the same held-out test examples through lm-eval, and
compared with the first row's (zero-shot CoT, the task's own prompt) example by example:
  zero-shot CoT · few-shot CoT (the chain-of-thought exemplars lm-eval ships, where it has them) ·
  demonstrations only (the baseline prompt with verified chain-of-thought demonstrations written by the
  optimizer, as DSPy's BootstrapFewShot does: with ABO step 0 it splits ABO's gain into "has
  demonstrations" and "has a procedure") · the best APO method (the five methods, chosen by dev) ·
  ABO after step 0, 1, 2 · ABO without demonstrations (ABO's best prompt with its demonstrations taken
  out, re-scored) · the ABO-ablation run (optimized without demonstrations from the start).
Every method gets the same rounds (2 unless --rounds says otherwise, so ABO's rows are steps 0-2 whatever
the preset) and the same patience. Every row names where its prompt came from (the baseline can win a
beam) and carries the ledger of what made it plus its own test evaluation (optimizer calls and tokens,
target requests and tokens, the cost of each and of both) and seconds. `--seeds N` repeats the table
with N seeds and reports each row's spread.
The optimize runs of every task and seed are the cells of one grid (`run/grid`: `--executor local|ray`, the
caps shared among them); the rows are then evaluated here, and a failed run's rows are left out.
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

from lm_eval_abo.artifact import store
from lm_eval_abo.config import OptimizeConfig
from lm_eval_abo.cost.ledger import Ledger, total
from lm_eval_abo.infra.errors import AboError
from lm_eval_abo.infra.files import write_json, write_text_atomic
from lm_eval_abo.infra.lock import FolderLock
from lm_eval_abo.optimizers import resolve
from lm_eval_abo.reports.paper_table import spread, table_markdown
from lm_eval_abo.run import evaluation
from lm_eval_abo.run.grid import run_grid
from lm_eval_abo.run.optimize import finished
from lm_eval_abo.run.session import caps_of, open_session, resolve_run, target_of
from lm_eval_abo.tasks import cot_exemplars

APO_METHODS = ("ape", "apo", "apo-sum", "promptagent", "opro")
ROUNDS = 2  # the paper's ABO reports steps 0-2


def _cumulative(result, upto: int) -> tuple[Ledger, float]:
    """The ledger and seconds of the rounds 0..upto of a run."""
    rounds = result.rounds[: upto + 1]
    return total(r.ledger for r in rounds), sum(r.seconds or 0.0 for r in rounds)


class Rows:
    """A task's rows: each prompt evaluated once on test, compared with the first one's."""

    def __init__(self, session, folder: Path, out):
        self.session, self.folder, self.out = session, folder, out
        self.rows: list[dict] = []
        self.first: evaluation.TestRun | None = None

    def add(self, name: str, prompt, method: str, origin: str, made: Ledger | None = None, seconds: float = 0.0,
            detail: str = "") -> None:
        """A row: the prompt's test score, and the ledger of what made it (`made`) plus its test evaluation."""
        task, seed = self.session.task_name, self.session.seed
        path = store.save(store.Artifact(task=task, method=method, prompt=prompt), self.folder / f"{name}.yaml")
        provenance = {"task": task, "method": method, "source": str(path), "prompt_sha256": prompt.sha256()}
        test = evaluation.evaluate(self.session, prompt, self.folder / "results" / name, provenance)
        used = (made or Ledger()).plus(Ledger(target=test.usage))
        row = {
            "task": task, "seed": seed, "row": name, "origin": origin, "detail": detail,
            "metric": test.score["metric"], "value": test.score["value"], "stderr": test.score["stderr"],
            "n": test.score["n"], "optimizer_calls": used.optimizer.calls, "tokens": used.optimizer.tokens,
            "target_requests": used.target.calls, "target_tokens": used.target.tokens,
            "target_tokens_estimated": used.target.estimated, "cost_usd": used.cost_usd, "cost_known": used.cost_known,
            "optimizer_cost_usd": used.optimizer.cost_usd, "target_cost_usd": used.target.cost_usd,
            "usage": used.to_dict(), "seconds": round(seconds + test.seconds, 1), "results": str(test.results),
        }
        if self.first is None:
            self.first = test
        else:
            c = evaluation.compared(self.first, test, seed)
            row.update(vs_baseline=c.difference, ci=list(c.interval), mcnemar_p=c.mcnemar_p, permutation_p=c.permutation_p)
        self.rows.append(row)
        self.out(f"{task} (seed {seed}): {name}: {test.score['value']:.3f} (n={test.score['n']})")


def run_rows(run) -> tuple[Ledger, float]:
    """What a whole optimize run used: its ledger and seconds."""
    return Ledger.from_dict(run.artifact_data.usage), run.artifact_data.usage["seconds"]


def task_rows(config: OptimizeConfig, apo_methods, lm, out, runs: dict) -> list[dict]:
    """A task's rows; `runs` holds the outcome of each of its optimize runs (None where the run failed: its
    rows are left out)."""
    session = open_session(resolve_run(config)[0], lm)
    rows = Rows(session, Path(config.output) / config.task / "paper-table", out)
    default = session.bridge.default_prompt
    rows.add("zero-shot CoT", default, "zero-shot-cot", "baseline")
    exemplars = cot_exemplars(session.bridge.reference.config.metadata or {})
    if exemplars:
        rows.add("few-shot CoT", replace(default, demonstrations=exemplars), "few-shot-cot", "lm-eval's exemplars",
                 detail=f"{len(exemplars)} exemplars from lm-eval")

    abo, abo_params = resolve("abo", config.preset, {})
    ctx = session.context(abo_params)
    started, before = time.time(), session.ledger.snapshot()
    demos, counts = abo.demonstrations(ctx, [], "demonstrations-only control", [])
    rows.add("demonstrations only", replace(default, demonstrations=tuple(demos)), "demonstrations-only",
             "baseline + verified demonstrations", session.ledger.minus(before), time.time() - started,
             detail=f"{len(demos)} demonstrations ({counts})")

    apo = {m: runs[m] for m in apo_methods if runs.get(m)}
    if apo:
        best = max(apo, key=lambda m: apo[m].artifact_data.scores["dev"]["value"])
        dev = ", ".join(f"{m} {apo[m].artifact_data.scores['dev']['value']:.3f}" for m in apo)
        rows.add("best APO method", apo[best].artifact_data.prompt, best, apo[best].result.best.candidate.origin,
                 *run_rows(apo[best]), detail=f"{best} (dev {dev})")

    outcome = runs.get("abo")
    if outcome:
        run = outcome.result
        for record in run.rounds:  # the best prompt after each step, on test
            node = run.best_after(record)
            rows.add(f"ABO step {record.round}", node.prompt, "abo", node.candidate.origin,
                     *_cumulative(run, record.round), detail=f"dev {record.best.dev:.3f}")
        best = run.best
        rows.add("ABO without demonstrations", replace(best.prompt, demonstrations=()), "abo", f"{best.candidate.origin}, "
                 "demonstrations taken out", *run_rows(outcome), detail="ABO's best prompt, re-scored without its demonstrations")
    ablation = runs.get("abo-ablation")
    if ablation:
        rows.add("ABO-ablation run", ablation.artifact_data.prompt, "abo-ablation", ablation.result.best.candidate.origin,
                 *run_rows(ablation), detail="optimized without demonstrations from step 0")
    return rows.rows


def paper_table(config: OptimizeConfig, tasks: list[str], apo_methods=APO_METHODS, seeds: int = 1, out=print,
                executor: str = "local", ray_address: str | None = None, lm=None) -> dict:
    """The table for `tasks`; its optimize runs are the cells of one grid on `executor` (`ray_address`), with
    `config`'s caps over the whole grid. `lm`: an already loaded target (default: loaded from `config`).
    The result's "failed" lists the runs that failed (their rows are left out)."""
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
    methods = (*apo_methods, "abo", "abo-ablation")
    with FolderLock(folder, "paper-table", out):  # each optimize run also locks its own folder
        lm = lm or (target_of(config).load() if executor == "local" else None)  # shared by the local cells
        started = time.time()
        seeded = [replace(config, seed=config.seed + offset,
                          output=str(folder / f"seed-{config.seed + offset}") if seeds > 1 else config.output)
                  for offset in range(seeds)]
        grid = run_grid([replace(s, task=task, method=m) for s in seeded for task in tasks for m in methods], folder,
                        executor, ray_address, caps=caps_of(config), resume=True, lm=lm, out=out)
        lm = lm or target_of(config).load()
        rows = []
        for s in seeded:
            for task in tasks:
                runs = {m: finished(replace(s, task=task, method=m)) for m in methods}
                rows += task_rows(replace(s, task=task), apo_methods, lm, out, runs)
        result = {
            "target": {"model": config.model}, "optimizer": config.optimizer, "preset": config.preset,
            "rounds": config.rounds, "patience": config.patience, "seeds": seeds, "rows": rows,
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
