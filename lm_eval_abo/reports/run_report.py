"""What a run shows people: the projection, a summary row per round, a readable report, the ledger throughout."""

from __future__ import annotations

import difflib
from dataclasses import dataclass

from lm_eval_abo.cost.ledger import Caps
from lm_eval_abo.optimizers.result import RoundRecord, SearchResult
from lm_eval_abo.reports.markdown import fmt, row, table

COLUMNS = ("round", "candidates", "best dev", "mean dev", "opt calls", "opt tokens", "target req", "target tokens", "cost",
           "seconds", "optimizer s", "target s")
SHOWN_FLIPS = 10


def money(usage: dict) -> str:
    """Dollars of a usage or a ledger, or n/a where a price was unknown."""
    return f"${usage['cost_usd']:.4f}" if usage.get("cost_known", True) else "n/a"


def cost_text(usage: dict) -> str:
    return money(usage) if usage.get("cost_known", True) else "n/a (tokens only)"


def tokens_text(usage: dict) -> str:
    """A usage's tokens, in + out, marked where they were estimated."""
    text = f"{usage['prompt_tokens'] + usage['completion_tokens']:,}"
    return text + " (estimated)" if usage.get("estimated") else text


def usage_text(usage: dict, unit: str) -> str:
    """e.g. "12 calls (3 cached), 4,567 tokens (3,900 in, 667 out), $0.0123"."""
    return (f"{usage['calls']:,} {unit} ({usage['cache_hits']:,} cached), {tokens_text(usage)} tokens "
            f"({usage['prompt_tokens']:,} in, {usage['completion_tokens']:,} out), {cost_text(usage)}")


@dataclass(frozen=True)
class Heading:
    """What a run is, as its console lines and report name it (the target's model_args with secrets masked)."""

    method: str
    task: str
    model: str
    model_args: str
    optimizer: str
    rounds: int
    beam: int

    def line(self) -> str:
        return (f"{self.method} on {self.task}: {self.rounds} round(s), beam {self.beam}; target {self.model} "
                f"({self.model_args}), optimizer {self.optimizer}")


def _sides(ledger: dict) -> list[str]:
    """The ledger's lines that were used: the optimizer and the target always, the grader when it was called."""
    return ["optimizer", "target"] + (["grader"] if (ledger.get("grader") or {}).get("calls") else [])


def ledger_text(ledger: dict) -> str:
    """The lines of a ledger (a round record or a run's usage) and their total cost."""
    sides = _sides(ledger)
    total = {"cost_usd": sum(ledger[s]["cost_usd"] for s in sides), "cost_known": all(ledger[s]["cost_known"] for s in sides)}
    kinds = {"optimizer": "calls", "target": "requests", "grader": "calls"}
    return "; ".join(f"{side} {usage_text(ledger[side], kinds[side])}" for side in sides) + f"; total {cost_text(total)}"


def projection_text(heading: Heading, plan, caps: Caps) -> str:
    """The projection as printed before any call (and by --dry-run), with what it means for the caps."""
    whole = plan.total
    graded = bool(whole.grader.calls)

    def cells(label, ledger):
        opt, tgt, grd = ledger.optimizer.to_dict(), ledger.target.to_dict(), ledger.grader.to_dict()
        return [label, opt["calls"], tokens_text(opt), money(opt), tgt["calls"], tokens_text(tgt), money(tgt),
                *([grd["calls"], tokens_text(grd), money(grd)] if graded else []), money(ledger.to_dict())]

    lines = [
        heading.line(),
        f"prices: target {plan.prices['target']}; optimizer {plan.prices['optimizer']}",
        f"projected before any call (calls and requests at most: caches and early stops make them fewer; target "
        f"tokens {plan.counted}, its replies at their max_gen_toks cap):",
        *table(["round", "optimizer calls", "optimizer tokens", "optimizer $", "target requests", "target tokens",
                "target $", *(["grader calls", "grader tokens", "grader $"] if graded else []), "total $"],
               [*(cells(r, ledger) for r, ledger in enumerate(plan.rounds)),
                cells("test (baseline and best)", plan.test), cells("total", whole)], left=0),
    ]
    shown = []
    if caps.max_cost is not None:
        shown.append(f"--max-cost ${caps.max_cost:g} (projected {money(whole.to_dict())})")
    if caps.max_target_tokens is not None:
        shown.append(f"--max-target-tokens {caps.max_target_tokens:,} (projected {whole.target.tokens:,})")
    if caps.max_optimizer_calls is not None:
        shown.append(f"--max-optimizer-calls {caps.max_optimizer_calls} (projected {whole.optimizer.calls})")
    if shown:
        last = plan.last_round_within(caps)
        if last == heading.rounds:
            lines.append(f"caps: {'; '.join(shown)}: the projection fits")
        else:
            stop = f"after round {last}" if last is not None else "in round 0, with the baseline"
            lines.append(f"caps: {'; '.join(shown)}: the projection exceeds them; the search keeps to the caps, "
                         f"stopping at its last complete round (projected: {stop}), and still evaluates the best "
                         f"prompt on test ({tokens_text(plan.test.target.to_dict())} tokens, "
                         f"{money(plan.test.to_dict())} kept aside for it)")
    return "\n".join(lines)


def _phases(record: dict) -> str:
    """Where a round's (or a run's) wall time went, where it was recorded."""
    names = [("optimizer", "optimizer_seconds"), ("target", "target_seconds"), ("test", "test_seconds")]
    parts = [f"{name} {record[key]} s" for name, key in names if record.get(key) is not None]
    return f" ({', '.join(parts)})" if parts else ""


def _shown(value) -> str:
    return "-" if value is None else str(value)


def round_header() -> str:
    return "\n".join(table(COLUMNS, [], left=0))


def round_row(record: RoundRecord) -> str:
    opt, target = record.optimizer.to_dict(), record.target.to_dict()
    return row([
        record.round, len(record.candidates), fmt(record.best.dev) + (" (noise)" if record.best.within_noise else ""),
        fmt(record.mean_dev), opt["calls"], tokens_text(opt), target["calls"], tokens_text(target),
        money(record.ledger.to_dict()), _shown(record.seconds), _shown(record.optimizer_seconds),
        _shown(record.target_seconds),
    ])


def notes_text(record: RoundRecord) -> str:
    """What the method said of a round as a whole (e.g. GEPA's budget and proposals)."""
    return f"round {record.round}: " + "; ".join(f"{k.replace('_', ' ')}: {v}" for k, v in record.notes.items())


def diagnosis_tables(record: RoundRecord) -> list[str]:
    """ABO's step-failure tables of a round: per diagnosed beam prompt, failures per step and kind."""
    seen, tables = set(), []
    for c in record.candidates:
        diagnosis = c.notes.get("diagnosis")
        if not diagnosis or diagnosis["parent"] in seen:
            continue
        seen.add(diagnosis["parent"])
        located = ", ".join(
            f"{e['id']}: step {e['step']} {e['kind']}" if e["step"] else f"{e['id']}: not located" for e in diagnosis["errors"]
        )
        tables.append("\n".join([
            f"step failures of {diagnosis['parent']} (round {record.round}):",
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


def _noise(record: RoundRecord) -> str:
    """A new best's gain over the previous one, when a paired test cannot tell it from noise."""
    best = record.best
    if not best.within_noise:
        return ""
    if best.compared is None:
        return f", a gain within noise (paired p = {best.gain_p:.3g})"
    return (f", a gain within noise (paired p = {best.gain_p:.3g}; {best.gain_p_adjusted:.3g} corrected for the "
            f"highest of {best.compared} candidates)")


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
        if "one_answer" in test:
            lines += [one_answer_text(test), ""]
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


def _dropped(record: RoundRecord) -> list[str]:
    """The candidates a round rejected before scoring them, and why."""
    if not record.dropped:
        return []
    return ["Rejected before scoring:", "", *(f"- `{d.key}` ({d.origin}): {d.reason}" for d in record.dropped), ""]


def _flipped(dev_docs: list[dict], key) -> str:
    """A dev example a new best fixed or broke; with several targets its key is "label:index", and the model
    is named."""
    model, _, index = str(key).rpartition(":")
    return (f"({model}) " if model else "") + _doc_text(dev_docs[int(index)])


def run_report(heading: Heading, result: SearchResult, dev_docs: list[dict], metric: str, final=None,
               test_docs: list[dict] | None = None) -> str:
    """A markdown report: per round the candidates, the best prompt's diff, reflections, flips, cost; at the
    end the test scores of the best prompt and of the baseline, and what the best prompt fixed and broke."""
    out = [
        f"# {heading.method} on {heading.task}",
        "",
        f"- target: `{heading.model}` (`{heading.model_args}`)",
        f"- optimizer: `{heading.optimizer}`",
        f"- metric: `{metric}` on {result.baseline.dev_n} dev examples",
        f"- rounds completed: {result.last_round} of {heading.rounds}" + (f" (stopped: {result.stopped})"
                                                                          if result.stopped else ""),
        "",
    ]
    previous = None
    for record in result.rounds:
        best = result.best_after(record)
        out += [
            f"## Round {record.round}",
            "",
            f"Best dev {fmt(record.best.dev)} (± {fmt(record.best.stderr)}, n={record.best.n}){_noise(record)}; "
            f"{ledger_text(record.ledger.to_dict())}; {_shown(record.seconds)} s{_phases(record.to_dict())}.",
            "",
            *([notes_text(record), ""] if record.notes else []),
            *table(["candidate", "origin", "parent", "dev"],
                   [[c.key, c.origin, c.parent or "-", fmt(c.dev)] for c in record.candidates], left=3),
            "",
            *_dropped(record),
        ]
        for diagnosis in diagnosis_tables(record):
            out += [diagnosis.replace("\n", "\n\n", 1), ""]
        out += ["<details><summary>Candidate prompts</summary>", ""]
        for c in record.candidates:
            out += [f"`{c.key}` ({c.origin}):", "", "```text", _rendered(result.node(c.key).prompt), "```", ""]
        out += ["</details>", ""]
        notes = [(c.key, c.notes) for c in record.candidates if c.notes]
        if notes:
            out += ["Reflections behind the candidates:", ""]
            out += [f"- `{key}`: " + "; ".join(f"{k}: {v}" for k, v in n.items()).replace("\n", " ") for key, n in notes]
            out.append("")
        if previous is not None and best.key != previous.key:
            flips = record.flips
            out += [
                f"New best. Dev examples fixed: {len(flips['fixed'])}, broken: {len(flips['broken'])}.",
                "",
                *(f"- fixed: {_flipped(dev_docs, i)}" for i in flips["fixed"][:SHOWN_FLIPS]),
                *(f"- broken: {_flipped(dev_docs, i)}" for i in flips["broken"][:SHOWN_FLIPS]),
                "",
                "```diff",
                _diff(previous.prompt, best.prompt),
                "```",
                "",
            ]
        previous = best
    out += ["## Best prompt", "", "```text", _rendered(result.best.prompt), "```", ""]
    if final is not None and "test" in final.scores:
        out += _test_section(final, test_docs) + _cost_section(final.usage)
    return "\n".join(out)


def _cost_section(usage: dict) -> list[str]:
    """What the run used, the test evaluation included, beside its projection."""
    projected, rows = usage["projection"]["total"], []
    for side in _sides(usage):
        got, plan = usage[side], projected.get(side) or {"calls": 0, "prompt_tokens": 0, "completion_tokens": 0,
                                                         "cost_usd": 0.0, "cost_known": True}
        rows.append([side, f"{got['calls']:,} ({got['cache_hits']:,} cached)", tokens_text(got), money(got),
                     f"{plan['calls']:,}", tokens_text(plan), money(plan)])
    rows.append(["total", "", "", money(usage), "", "", money(projected)])
    return ["## Cost", "", f"Prices: target {usage['prices']['target']}; optimizer {usage['prices']['optimizer']}.", "",
            *table(["", "calls / requests", "tokens", "dollars", "projected calls / requests", "projected tokens",
                    "projected dollars"], rows), ""]


def answers_text(score: dict) -> str:
    """What a prompt's test answers were: how many different ones, how many the filter could not read."""
    if "distinct_answers" not in score:
        return "answers not recorded"
    return f"{score['distinct_answers']} different answers, {score.get('unread', 0)} unreadable"


def one_answer_text(test: dict) -> str:
    return (f"The best prompt gave one answer, {test['one_answer']!r}, to all {test['n']} test examples: its score is "
            f"that answer's share of the gold answers, not the task solved.")


def final_text(artifact, artifact_path, results_path, run_dir) -> str:
    scores = artifact.scores
    dev, test, base = scores["dev"], scores["test"], scores["baseline_dev"]
    usage = artifact.usage
    lines = [
        "",
        f"best prompt: {artifact_path}",
        f"  dev  {dev['metric']} = {fmt(dev['value'])} (baseline {fmt(base['value'])}, n={dev['n']})",
        f"  test {test['metric']} = {fmt(test['value'])} ± {fmt(test['stderr'])} (baseline "
        f"{fmt(scores['baseline_test']['value'])}, n={test['n']}); {answers_text(test)} (baseline "
        f"{answers_text(scores['baseline_test'])})",
        f"  {ledger_text(usage)} (projected {money(usage['projection']['total'])}); of the target, the test "
        f"evaluation {usage_text(usage['test'], 'requests')}",
        f"  {usage['seconds']} s{_phases(usage)}",
        f"lm-eval results: {results_path}",
    ]
    if artifact.export.get("yaml"):
        lines.append(f"re-run with the stock lm_eval: lm_eval --include_path {run_dir} --tasks {artifact.export['task']} --model ...")
    lines.append(f"verdict: {scores['test_comparison']['verdict']}")
    for label, own in scores.get("per_model", {}).items():  # several targets: each one's own
        lines.append(f"  {label}: dev {fmt(own['dev']['value'])} (baseline {fmt(own['baseline_dev']['value'])}), test "
                     f"{fmt(own['test']['value'])} (baseline {fmt(own['baseline_test']['value'])}): "
                     f"{own['test_comparison']['verdict']}")
    if "one_answer" in test:
        lines.append(f"warning: {one_answer_text(test)}")
    return "\n".join(lines)
