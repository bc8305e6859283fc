"""What a run shows people: the projected calls, a summary row per round, a readable report."""

from __future__ import annotations

import difflib

from lm_eval_abo.markdown import fmt, row, table
from lm_eval_abo.redact import redact_arg_string

COLUMNS = ("round", "candidates", "best dev", "mean dev", "opt calls", "tokens", "cost", "target req", "seconds", "optimizer s", "target s")
SHOWN_FLIPS = 10


def cost_text(usage: dict) -> str:
    return f"${usage['cost_usd']:.4f}" if usage.get("cost_known", True) else "n/a (tokens only)"


def projection_text(config, plan: dict) -> str:
    lines = [
        f"{config.method} on {config.task}: {config.rounds} round(s), beam {config.beam}; "
        f"target {config.model} ({redact_arg_string(config.model_args)}), optimizer {config.optimizer}",
        "projected at most (caches and early stops make it fewer):",
        *table(["round", "optimizer calls", "target requests"],
               [*([r["round"], r["optimizer_calls"], r["target_requests"]] for r in plan["rounds"]),
                ["test (baseline and best)", 0, plan["test_requests"]],
                ["total", plan["optimizer_calls"], plan["target_requests"]]], left=0),
    ]
    if config.max_optimizer_calls is not None or config.max_cost is not None:
        lines.append(f"budget caps: optimizer calls {config.max_optimizer_calls}, cost {config.max_cost}")
    return "\n".join(lines)


def _phases(record: dict) -> str:
    """Where a round's (or a run's) wall time went, where it was recorded."""
    names = [("optimizer", "optimizer_seconds"), ("target", "target_seconds"), ("test", "test_seconds")]
    parts = [f"{name} {record[key]} s" for name, key in names if key in record]
    return f" ({', '.join(parts)})" if parts else ""


def round_header() -> str:
    return "\n".join(table(COLUMNS, [], left=0))


def round_row(record: dict) -> str:
    opt = record["optimizer"]
    best = record["best"]
    return row([
        record["round"], len(record["candidates"]), fmt(best["dev"]) + (" (noise)" if best.get("within_noise") else ""),
        fmt(record["mean_dev"]),
        opt["calls"], opt["prompt_tokens"] + opt["completion_tokens"], cost_text(opt),
        record["target_requests"], record["seconds"], record.get("optimizer_seconds", "-"), record.get("target_seconds", "-"),
    ])


def notes_text(record: dict) -> str:
    """What the method said of a round as a whole (e.g. GEPA's budget and proposals)."""
    return f"round {record['round']}: " + "; ".join(f"{k.replace('_', ' ')}: {v}" for k, v in record["notes"].items())


def diagnosis_tables(record: dict) -> list[str]:
    """ABO's step-failure tables of a round: per diagnosed beam prompt, failures per step and kind."""
    seen, tables = set(), []
    for c in record["candidates"]:
        diagnosis = (c.get("notes") or {}).get("diagnosis")
        if not diagnosis or diagnosis["parent"] in seen:
            continue
        seen.add(diagnosis["parent"])
        located = ", ".join(
            f"{e['id']}: step {e['step']} {e['kind']}" if e["step"] else f"{e['id']}: not located" for e in diagnosis["errors"]
        )
        tables.append("\n".join([
            f"step failures of {diagnosis['parent']} (round {record['round']}):",
            *table(["step", "not followed", "wrong"],
                   [[r["step"], r["not_followed"], r["wrong"]] for r in diagnosis["step_failures"]], left=0),
            f"errors: {located}",
        ]))
    return tables


def _rendered(prompt) -> str:
    parts = [prompt.instruction_block() or "(the task's own instruction)"]
    for demo in prompt.demonstrations:
        parts.append(f"[demonstration] {demo.doc.get('input', demo.doc)}\n-> {demo.output}")
    if prompt.answer_prefix:
        parts.append(f"[answer starts with] {prompt.answer_prefix}")
    return "\n\n".join(parts)


def _diff(before, after) -> str:
    lines = difflib.unified_diff(_rendered(before).splitlines(), _rendered(after).splitlines(), "previous best", "new best", lineterm="")
    return "\n".join(lines)


def _noise(best: dict) -> str:
    """A new best's gain over the previous one, when a paired test cannot tell it from noise."""
    return f", a gain within noise (paired p = {best['gain_p']:.3g})" if best.get("within_noise") else ""


def _doc_text(doc: dict) -> str:
    text = doc.get("input") or doc.get("question") or next((v for v in doc.values() if isinstance(v, str)), "")
    return repr(str(text)[:160])


def _test_section(final, test_docs: list[dict] | None) -> list[str]:
    scores = final.scores
    test, base, comparison = scores["test"], scores.get("baseline_test"), scores.get("test_comparison")
    lines = ["## Test", "", f"Each prompt once, on the same {test['n']} held-out test examples ({test['metric']}):", "",
             *table(["prompt", "score", "± stderr", "n"],
                    [["best", fmt(test["value"]), fmt(test["stderr"]), test["n"]],
                     *([["baseline", fmt(base["value"]), fmt(base["stderr"]), base["n"]]] if base else [])]), ""]
    if comparison:
        lines += [f"**{comparison['verdict']}**", ""]
        positions = {doc_id: i for i, doc_id in enumerate(final.splits.get("test", []))}
        for kind in ("fixed", "broken"):
            ids = comparison[kind]
            lines.append(f"Test examples the best prompt {kind}: {len(ids)}.")
            if test_docs:
                lines += [f"- `{i}`: {_doc_text(test_docs[positions[i]])}" for i in ids[:SHOWN_FLIPS] if i in positions]
            lines.append("")
    if final.export.get("yaml"):
        lines += [f"As a plain lm-eval task: `{final.export['yaml']}` (its requests checked against the run's on "
                  f"{final.export['checked_documents']} test documents).", ""]
    return lines


def run_report(config, state, dev_docs: list[dict], bridge, final=None, test_docs: list[dict] | None = None) -> str:
    """A markdown report: per round the candidates, the best prompt's diff, reflections, flips, cost; at the
    end the test scores of the best prompt and of the baseline, and what the best prompt fixed and broke."""
    out = [
        f"# {config.method} on {config.task}",
        "",
        f"- target: `{config.model}` (`{redact_arg_string(config.model_args)}`)",
        f"- optimizer: `{config.optimizer}`",
        f"- metric: `{bridge.metric_key}` on {len(state.nodes[0].dev_per_example)} dev examples",
        f"- rounds completed: {state.round} of {config.rounds}" + (f" (stopped: {state.stopped})" if state.stopped else ""),
        "",
    ]
    previous = None
    for record in state.trace:
        best = state.node(record["best"]["key"])
        opt = record["optimizer"]
        out += [
            f"## Round {record['round']}",
            "",
            f"Best dev {fmt(record['best']['dev'])} (± {fmt(record['best']['stderr'])}, n={record['best']['n']})"
            f"{_noise(record['best'])}; "
            f"optimizer {opt['calls']} calls ({opt['cache_hits']} cached), "
            f"{opt['prompt_tokens'] + opt['completion_tokens']} tokens, {cost_text(opt)}; "
            f"target {record['target_requests']} requests; {record['seconds']} s{_phases(record)}.",
            "",
            *([notes_text(record), ""] if record.get("notes") else []),
            *table(["candidate", "origin", "parent", "dev"],
                   [[c["key"], c["origin"], c["parent"] or "-", fmt(c["dev"])] for c in record["candidates"]], left=3),
            "",
        ]
        for diagnosis in diagnosis_tables(record):
            out += [diagnosis.replace("\n", "\n\n", 1), ""]
        by_key = {n.key[:12]: n for n in state.nodes}
        out += ["<details><summary>Candidate prompts</summary>", ""]
        for c in record["candidates"]:
            out += [f"`{c['key']}` ({c['origin']}):", "", "```text", _rendered(by_key[c["key"]].prompt), "```", ""]
        out += ["</details>", ""]
        notes = [(c["key"], c["notes"]) for c in record["candidates"] if c.get("notes")]
        if notes:
            out += ["Reflections behind the candidates:", ""]
            out += [f"- `{key}`: " + "; ".join(f"{k}: {v}" for k, v in n.items()).replace("\n", " ") for key, n in notes]
            out.append("")
        if previous is not None and best.key != previous.key:
            flips = record["flips"]
            out += [
                f"New best. Dev examples fixed: {len(flips['fixed'])}, broken: {len(flips['broken'])}.",
                "",
                *(f"- fixed: {_doc_text(dev_docs[i])}" for i in flips["fixed"][:SHOWN_FLIPS]),
                *(f"- broken: {_doc_text(dev_docs[i])}" for i in flips["broken"][:SHOWN_FLIPS]),
                "",
                "```diff",
                _diff(previous.prompt, best.prompt),
                "```",
                "",
            ]
        previous = best
    out += ["## Best prompt", "", "```text", _rendered(state.best.prompt), "```", ""]
    if final is not None and "test" in final.scores:
        out += _test_section(final, test_docs)
    return "\n".join(out)


def final_text(artifact, artifact_path, results_path, run_dir) -> str:
    scores = artifact.scores
    dev, test, base = scores["dev"], scores["test"], scores["baseline_dev"]
    usage = artifact.usage["optimizer"]
    lines = [
        "",
        f"best prompt: {artifact_path}",
        f"  dev  {dev['metric']} = {fmt(dev['value'])} (baseline {fmt(base['value'])}, n={dev['n']})",
        f"  test {test['metric']} = {fmt(test['value'])} ± {fmt(test['stderr'])} (baseline "
        f"{fmt(scores['baseline_test']['value'])}, n={test['n']})",
        f"  optimizer: {usage['calls']} calls ({usage['cache_hits']} cached), "
        f"{usage['prompt_tokens'] + usage['completion_tokens']} tokens, {cost_text(usage)}; "
        f"target: {artifact.usage['target_requests']} requests; {artifact.usage['seconds']} s{_phases(artifact.usage)}",
        f"lm-eval results: {results_path}",
    ]
    if artifact.export.get("yaml"):
        lines.append(f"re-run with the stock lm_eval: lm_eval --include_path {run_dir} --tasks {artifact.export['task']} --model ...")
    lines.append(f"verdict: {scores['test_comparison']['verdict']}")
    return "\n".join(lines)
