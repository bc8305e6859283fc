"""What a run shows people: the projected calls, a summary row per round, a readable report."""

from __future__ import annotations

import difflib

from lm_eval_abo.redact import redact_arg_string

COLUMNS = ("round", "candidates", "best dev", "mean dev", "opt calls", "tokens", "cost", "target req", "seconds", "optimizer s", "target s")


def _fmt(value, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def cost_text(usage: dict) -> str:
    return f"${usage['cost_usd']:.4f}" if usage.get("cost_known", True) else "n/a (tokens only)"


def projection_text(config, plan: dict) -> str:
    lines = [
        f"{config.method} on {config.task}: {config.rounds} round(s), beam {config.beam}; "
        f"target {config.model} ({redact_arg_string(config.model_args)}), optimizer {config.optimizer}",
        "projected at most (caches and early stops make it fewer):",
        "| round | optimizer calls | target requests |",
        "|---:|---:|---:|",
        *(f"| {r['round']} | {r['optimizer_calls']} | {r['target_requests']} |" for r in plan["rounds"]),
        f"| test | 0 | {plan['test_requests']} |",
        f"| total | {plan['optimizer_calls']} | {plan['target_requests']} |",
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
    return "| " + " | ".join(COLUMNS) + " |\n|" + "---:|" * len(COLUMNS)


def round_row(record: dict) -> str:
    opt = record["optimizer"]
    cells = [
        record["round"], len(record["candidates"]), _fmt(record["best"]["dev"]), _fmt(record["mean_dev"]),
        opt["calls"], opt["prompt_tokens"] + opt["completion_tokens"], cost_text(opt),
        record["target_requests"], record["seconds"], record.get("optimizer_seconds", "-"), record.get("target_seconds", "-"),
    ]
    return "| " + " | ".join(map(str, cells)) + " |"


def diagnosis_tables(record: dict) -> list[str]:
    """ABO's step-failure tables of a round: per diagnosed beam prompt, failures per step and kind."""
    seen, tables = set(), []
    for c in record["candidates"]:
        diagnosis = (c.get("notes") or {}).get("diagnosis")
        if not diagnosis or diagnosis["parent"] in seen:
            continue
        seen.add(diagnosis["parent"])
        rows = [f"| {r['step']} | {r['not_followed']} | {r['wrong']} |" for r in diagnosis["step_failures"]]
        located = ", ".join(
            f"{e['id']}: step {e['step']} {e['kind']}" if e["step"] else f"{e['id']}: not located" for e in diagnosis["errors"]
        )
        tables.append("\n".join([
            f"step failures of {diagnosis['parent']} (round {record['round']}):",
            "| step | not followed | wrong |", "|---:|---:|---:|", *rows, f"errors: {located}",
        ]))
    return tables


def _rendered(prompt) -> str:
    parts = [prompt.instruction_block()]
    for demo in prompt.demonstrations:
        parts.append(f"[demonstration] {demo.doc.get('input', demo.doc)}\n-> {demo.output}")
    if prompt.answer_prefix:
        parts.append(f"[answer starts with] {prompt.answer_prefix}")
    return "\n\n".join(parts)


def _diff(before, after) -> str:
    lines = difflib.unified_diff(_rendered(before).splitlines(), _rendered(after).splitlines(), "previous best", "new best", lineterm="")
    return "\n".join(lines)


def run_report(config, state, dev_docs: list[dict], bridge, final=None) -> str:
    """A markdown report: per round the candidates, the best prompt's diff, reflections, flips, cost."""
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
            f"Best dev {_fmt(record['best']['dev'])} (± {_fmt(record['best']['stderr'])}, n={record['best']['n']}); "
            f"optimizer {opt['calls']} calls ({opt['cache_hits']} cached), "
            f"{opt['prompt_tokens'] + opt['completion_tokens']} tokens, {cost_text(opt)}; "
            f"target {record['target_requests']} requests; {record['seconds']} s{_phases(record)}.",
            "",
            "| candidate | origin | parent | dev |",
            "|---|---|---|---:|",
            *(f"| {c['key']} | {c['origin']} | {c['parent'] or '-'} | {_fmt(c['dev'])} |" for c in record["candidates"]),
            "",
        ]
        for table in diagnosis_tables(record):
            out += [table.replace("\n", "\n\n", 1), ""]
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
                *(f"- fixed: {dev_docs[i].get('input', '')[:160]!r}" for i in flips["fixed"][:10]),
                *(f"- broken: {dev_docs[i].get('input', '')[:160]!r}" for i in flips["broken"][:10]),
                "",
                "```diff",
                _diff(previous.prompt, best.prompt),
                "```",
                "",
            ]
        previous = best
    out += ["## Best prompt", "", "```text", _rendered(state.best.prompt), "```", ""]
    if final is not None and "test" in final.scores:
        test = final.scores["test"]
        out += [f"Test ({test['n']} examples, once): {bridge.metric_key} = {_fmt(test['value'])} ± {_fmt(test['stderr'])}", ""]
    return "\n".join(out)


def final_text(artifact, artifact_path, results_path) -> str:
    dev, test, base = artifact.scores["dev"], artifact.scores["test"], artifact.scores["baseline_dev"]
    usage = artifact.usage["optimizer"]
    return "\n".join([
        "",
        f"best prompt: {artifact_path}",
        f"  dev  {dev['metric']} = {_fmt(dev['value'])} (baseline {_fmt(base['value'])}, n={dev['n']})",
        f"  test {test['metric']} = {_fmt(test['value'])} ± {_fmt(test['stderr'])} (n={test['n']})",
        f"  optimizer: {usage['calls']} calls ({usage['cache_hits']} cached), "
        f"{usage['prompt_tokens'] + usage['completion_tokens']} tokens, {cost_text(usage)}; "
        f"target: {artifact.usage['target_requests']} requests; {artifact.usage['seconds']} s{_phases(artifact.usage)}",
        f"lm-eval results: {results_path}",
        f"re-run with: lm_eval --tasks {artifact.task} --include_path \"$(lm-eval-abo tasks-path)\" "
        f"--metadata '{{\"abo_prompt\": \"{artifact_path}\"}}' --model ...",
    ])
