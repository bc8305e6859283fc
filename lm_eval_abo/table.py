"""`lm-eval-abo paper-table`: the paper's Table 2 layout for one target/optimizer pair.

Per task, every row is a prompt evaluated once on the test split through lm-eval: zero-shot CoT (the
task's default prompt), few-shot CoT (the same with the chain-of-thought exemplars lm-eval ships), the
best APO method (by dev score), ABO after step 0, 1 and 2, and ABO without demonstrations. Each row
carries score ± stderr, n, the ledger of the run that made the prompt plus its own test evaluation (optimizer
calls and tokens, target requests and tokens, the cost of each and of both) and wall time; markdown and JSON
are written.
APO runs stop early by the config's patience; the ABO runs never do, so every step has its row.
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

from lm_eval_abo import evaluation, store
from lm_eval_abo.config import OptimizeConfig
from lm_eval_abo.files import write_json, write_text_atomic
from lm_eval_abo.ledger import Ledger, total
from lm_eval_abo.markdown import fmt, table
from lm_eval_abo.optimize import optimize
from lm_eval_abo.report import money, tokens_text
from lm_eval_abo.session import load_target, open_session
from lm_eval_abo.tasks import cot_exemplars

APO_METHODS = ("ape", "apo")


def _row(task: str, name: str, test: evaluation.TestRun, made: Ledger | None, seconds: float, detail: str = "") -> dict:
    """A row: the prompt's test score, and the ledger of what made it (`made`) plus its test evaluation."""
    used = (made or Ledger()).plus(Ledger(target=test.usage))
    return {
        "task": task, "row": name, "detail": detail, "metric": test.score["metric"], "value": test.score["value"],
        "stderr": test.score["stderr"], "n": test.score["n"], "optimizer_calls": used.optimizer.calls,
        "tokens": used.optimizer.tokens, "target_requests": used.target.calls, "target_tokens": used.target.tokens,
        "target_tokens_estimated": used.target.estimated, "cost_usd": used.cost_usd, "cost_known": used.cost_known,
        "optimizer_cost_usd": used.optimizer.cost_usd, "target_cost_usd": used.target.cost_usd,
        "usage": used.to_dict(), "seconds": round(seconds, 1), "results": str(test.results),
    }


def _cumulative(trace: list[dict], upto: int) -> tuple[Ledger, float]:
    """The ledger and seconds of the rounds 0..upto of a run."""
    return total(Ledger.from_dict(r) for r in trace[: upto + 1]), sum(r["seconds"] for r in trace[: upto + 1])


def task_rows(config: OptimizeConfig, apo_methods, lm, out) -> list[dict]:
    folder = Path(config.output) / config.task / "paper-table"
    session = open_session(config.resolved(), lm)
    rows = []

    def evaluate(name: str, prompt, method: str, usage: Ledger | None = None, seconds=0.0, detail="") -> None:
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
        evaluate("best APO method", art.prompt, best, Ledger.from_dict(art.usage), art.usage["seconds"],
                 detail=f"{best} (dev " + ", ".join(f"{m} {runs[m].artifact_data.scores['dev']['value']:.3f}" for m in runs) + ")")

    abo = optimize(replace(config, method="abo", patience=0), out=out, lm=lm).state
    prompts = {n.key: n.prompt for n in abo.nodes}
    for record in abo.trace:  # the best prompt after each step, on test
        usage, seconds = _cumulative(abo.trace, record["round"])
        evaluate(f"ABO step {record['round']}", prompts[record["best"]["key"]], "abo", usage, seconds,
                 detail=f"dev {record['best']['dev']:.3f}")
    ablation = optimize(replace(config, method="abo-ablation", patience=0), out=out, lm=lm).artifact_data
    evaluate("ABO without demonstrations", ablation.prompt, "abo-ablation", Ledger.from_dict(ablation.usage),
             ablation.usage["seconds"])
    return rows


def paper_table(config: OptimizeConfig, tasks: list[str], apo_methods=APO_METHODS, out=print) -> dict:
    # Re-running the command continues where it stopped; rows that evaluate a prompt an optimize run
    # already evaluated on test (the best APO and ABO prompts) are answered by the target cache.
    config = replace(config, resume=True, use_cache=config.use_cache or str(Path(config.output) / "target-cache"))
    lm = load_target(config)
    started = time.time()
    rows = [row for task in tasks for row in task_rows(replace(config, task=task), apo_methods, lm, out)]
    result = {
        "target": {"model": config.model}, "optimizer": config.optimizer, "preset": config.preset,
        "rows": rows, "seconds": round(time.time() - started, 1),
    }
    folder = Path(config.output)
    write_json(folder / "paper_table.json", result)
    markdown = table_markdown(result)
    write_text_atomic(folder / "paper_table.md", markdown + "\n")
    out(markdown)
    out(f"\nwritten: {folder / 'paper_table.md'} and paper_table.json")
    return result


def table_markdown(result: dict) -> str:
    header = ["task", "prompt", "score", "± stderr", "n", "optimizer calls", "optimizer tokens", "target requests",
              "target tokens", "cost", "optimizer cost", "target cost", "seconds", "detail"]
    body = [[r["task"], r["row"], fmt(r["value"]), fmt(r["stderr"]), r["n"], r["optimizer_calls"], f"{r['tokens']:,}",
             r["target_requests"], tokens_text(r["usage"]["target"]), money(r["usage"]), money(r["usage"]["optimizer"]),
             money(r["usage"]["target"]), r["seconds"], r["detail"]] for r in result["rows"]]
    return "\n".join([
        f"Target `{result['target']['model']}`, optimizer `{result['optimizer']}`; test split, each prompt evaluated once by lm-eval.",
        "", *table(header, body, left=2),
    ])
