"""`lm-eval-abo paper-table`: the paper's Table 2 layout for one target/optimizer pair.

Per task, every row is a prompt evaluated once on the test split through lm-eval: zero-shot CoT (the
task's default prompt), few-shot CoT (the same with the chain-of-thought exemplars lm-eval ships), the
best APO method (by dev score), ABO after step 0, 1 and 2, and ABO without demonstrations. Each row
carries score ± stderr, n, optimizer calls, tokens, cost and wall time; markdown and JSON are written.
APO runs stop early by the config's patience; the ABO runs never do, so every step has its row.
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

from lm_eval_abo import evaluation, store
from lm_eval_abo.config import OptimizeConfig
from lm_eval_abo.errors import AboError
from lm_eval_abo.files import write_json, write_text_atomic
from lm_eval_abo.lock import FolderLock
from lm_eval_abo.markdown import fmt, table
from lm_eval_abo.optimize import optimize
from lm_eval_abo.report import cost_text
from lm_eval_abo.session import load_target, open_session
from lm_eval_abo.tasks import cot_exemplars

APO_METHODS = ("ape", "apo")


def _row(task: str, name: str, test: evaluation.TestRun, usage: dict | None, seconds: float, detail: str = "") -> dict:
    usage = usage or {}
    return {
        "task": task, "row": name, "detail": detail, "metric": test.score["metric"], "value": test.score["value"],
        "stderr": test.score["stderr"], "n": test.score["n"], "optimizer_calls": usage.get("calls", 0),
        "tokens": usage.get("prompt_tokens", 0) + usage.get("completion_tokens", 0),
        "cost_usd": usage.get("cost_usd", 0.0), "cost_known": usage.get("cost_known", True),
        "seconds": round(seconds, 1), "results": str(test.results),
    }


def _cumulative(trace: list[dict], upto: int) -> tuple[dict, float]:
    """Optimizer usage and seconds of the rounds 0..upto of a run."""
    usage = {"calls": 0, "prompt_tokens": 0, "completion_tokens": 0, "cost_usd": 0.0, "cost_known": True}
    seconds = 0.0
    for record in trace[: upto + 1]:
        for k in ("calls", "prompt_tokens", "completion_tokens", "cost_usd"):
            usage[k] += record["optimizer"][k]
        usage["cost_known"] &= record["optimizer"]["cost_known"]
        seconds += record["seconds"]
    return usage, seconds


def task_rows(config: OptimizeConfig, apo_methods, lm, out) -> list[dict]:
    folder = Path(config.output) / config.task / "paper-table"
    session = open_session(config.resolved(), lm)
    rows = []

    def evaluate(name: str, prompt, method: str, usage=None, seconds=0.0, detail="") -> None:
        path = store.save(store.Artifact(task=config.task, method=method, prompt=prompt), folder / f"{name}.yaml")
        provenance = {"task": config.task, "method": method, "source": str(path), "prompt_sha256": prompt.sha256()}
        test = evaluation.evaluate(session, prompt, folder / "results" / name, provenance)
        rows.append(_row(config.task, name, test, usage, seconds + test.seconds, detail))
        out(f"{config.task}: {name}: {test.score['value']:.3f} (n={test.score['n']})")

    default = session.bridge.default_prompt
    evaluate("zero-shot CoT", default, "zero-shot-cot")
    exemplars = cot_exemplars(session.bridge.reference.config.metadata or {})
    if exemplars:
        evaluate("few-shot CoT", replace(default, demonstrations=exemplars), "few-shot-cot", detail=f"{len(exemplars)} exemplars from lm-eval")

    runs = {m: optimize(replace(config, method=m), out=out, lm=lm) for m in apo_methods}
    if runs:
        best = max(runs, key=lambda m: runs[m].artifact_data.scores["dev"]["value"])
        art = runs[best].artifact_data
        evaluate("best APO method", art.prompt, best, art.usage["optimizer"], art.usage["seconds"],
                 detail=f"{best} (dev " + ", ".join(f"{m} {runs[m].artifact_data.scores['dev']['value']:.3f}" for m in runs) + ")")

    abo = optimize(replace(config, method="abo", patience=0), out=out, lm=lm).state
    prompts = {n.key: n.prompt for n in abo.nodes}
    for record in abo.trace:  # the best prompt after each step, on test
        usage, seconds = _cumulative(abo.trace, record["round"])
        evaluate(f"ABO step {record['round']}", prompts[record["best"]["key"]], "abo", usage, seconds,
                 detail=f"dev {record['best']['dev']:.3f}")
    ablation = optimize(replace(config, method="abo-ablation", patience=0), out=out, lm=lm).artifact_data
    evaluate("ABO without demonstrations", ablation.prompt, "abo-ablation", ablation.usage["optimizer"], ablation.usage["seconds"])
    return rows


def paper_table(config: OptimizeConfig, tasks: list[str], apo_methods=APO_METHODS, out=print) -> dict:
    from lm_eval_abo.optimizers import METHODS

    if not tasks:
        raise AboError("--tasks: name at least one task")
    known = [m for m in METHODS if not m.startswith("abo")]
    unknown = [m for m in apo_methods if m not in known]
    if unknown:
        raise AboError(f"--apo-methods: unknown {', '.join(unknown)}; known: {', '.join(known)}")
    # Re-running the command continues where it stopped; rows that evaluate a prompt an optimize run
    # already evaluated on test (the best APO and ABO prompts) are answered by the target cache.
    config = replace(config, resume=True, use_cache=config.use_cache or str(Path(config.output) / "target-cache"))
    folder = Path(config.output)
    with FolderLock(folder, "paper-table", out):  # each optimize run also locks its own folder
        lm = load_target(config)
        started = time.time()
        rows = [row for task in tasks for row in task_rows(replace(config, task=task), apo_methods, lm, out)]
        result = {
            "target": {"model": config.model}, "optimizer": config.optimizer, "preset": config.preset,
            "rows": rows, "seconds": round(time.time() - started, 1),
        }
        write_json(folder / "paper_table.json", result)
        markdown = table_markdown(result)
        write_text_atomic(folder / "paper_table.md", markdown + "\n")
    out(markdown)
    out(f"\nwritten: {folder / 'paper_table.md'} and paper_table.json")
    return result


def table_markdown(result: dict) -> str:
    header = ["task", "prompt", "score", "± stderr", "n", "optimizer calls", "tokens", "cost", "seconds", "detail"]
    body = [[r["task"], r["row"], fmt(r["value"]), fmt(r["stderr"]), r["n"], r["optimizer_calls"], r["tokens"], cost_text(r),
             r["seconds"], r["detail"]] for r in result["rows"]]
    return "\n".join([
        f"Target `{result['target']['model']}`, optimizer `{result['optimizer']}`; test split, each prompt evaluated once by lm-eval.",
        "", *table(header, body, left=2),
    ])
