"""A comparison as people read it (markdown) and as tools read it (CSV): per task, the prompts and where
they came from, the transfer matrix, the rankings with Kendall's tau, and the rank changes, those that hold
first. `result` is what `run/compare.py` (or `transfer`) writes as JSON: one matrix per task."""

from __future__ import annotations

import csv
import io

from lm_eval_abo.reports.markdown import fmt, table
from lm_eval_abo.reports.run_report import money

CELL_COLUMNS = ("task", "prompt", "model", "metric", "score", "stderr", "n", "baseline", "difference", "ci_low",
                "ci_high", "beyond", "mcnemar_p", "permutation_p", "results")
RANK_COLUMNS = ("task", "setting", "model", "prompt", "score", "rank")


def signed(value) -> str:
    return "-" if value is None else f"{value:+.3f}"


def interval(ci) -> str:
    return f"{ci[0]:+.3f} to {ci[1]:+.3f}"


def cell_text(cell: dict | None) -> str:
    """A matrix cell: the score; beside a prompt other than the baseline, the paired difference from the model's
    baseline with its interval, starred where the interval excludes 0."""
    if cell is None:
        return "-"
    if "difference" not in cell:
        return fmt(cell["score"])
    star = "*" if cell["beyond"] else ""
    return f"{fmt(cell['score'])} ({signed(cell['difference'])}{star}, {interval(cell['ci'])})"


def tau_text(matrix: dict) -> str:
    parts = [f"{t['a']} vs {t['b']}: {signed(t['tau']) if t['tau'] is not None else 'undefined (ties)'} "
             f"({t['models']} models)" for t in matrix["tau"]]
    return "Kendall's tau-b between the rankings: " + ("; ".join(parts) if parts else "-") + "."


def rankings_rows(matrix: dict) -> tuple[list[str], list[list[str]]]:
    """The rankings as a table: a row per model (in the first setting's order), a column per setting."""
    settings = [r["setting"] for r in matrix["rankings"]]
    by = {(r["setting"], o["model"]): o for r in matrix["rankings"] for o in r["order"]}
    first = [o["model"] for o in matrix["rankings"][0]["order"]] if matrix["rankings"] else []
    models = first + [m for m in matrix["models"] if m not in first]
    body = [[m, *(f"{by[(s, m)]['rank']} ({fmt(by[(s, m)]['score'])})" if (s, m) in by else "-" for s in settings)]
            for m in models]
    return ["model", *(f"{s}: rank (score)" for s in settings)], body


def rankings_table(matrix: dict) -> list[str]:
    return table(*rankings_rows(matrix))


CHANGES_HEADER = ["models (a vs b)", "settings", "a - b before (95% CI)", "a - b after (95% CI)", "counts"]


def changes_rows(matrix: dict) -> list[list[str]]:
    return [[f"{c['a']} vs {c['b']}", f"{c['from']} -> {c['to']}",
             f"{signed(c['before'])} ({interval(c['before_ci'])})", f"{signed(c['after'])} ({interval(c['after_ci'])})",
             "holds" if c["holds"] else "within noise: not counted"] for c in matrix["changes"]]


def changes_text(matrix: dict) -> str:
    if not matrix["changes"]:
        return "No pair of models changed order between the settings."
    held = sum(c["holds"] for c in matrix["changes"])
    return (f"{held} of {len(matrix['changes'])} changes of order hold (both paired differences beyond their "
            "intervals, with opposite signs):")


def changes_table(matrix: dict) -> list[str]:
    if not matrix["changes"]:
        return [changes_text(matrix)]
    return [changes_text(matrix), "", *table(CHANGES_HEADER, changes_rows(matrix), 2)]


def shared_text(part: dict) -> str:
    shared = part.get("shared")
    if not shared:
        return ""
    what = "mean" if shared["objective"] == "mean" else "worst (min)"
    return (f"The shared prompt, `{shared['row']}`, optimized for all {len(shared['models'])} targets at once by one run "
            f"under the {what} of their dev scores: {fmt(shared['value'])} on dev.")


def dev_rows(part: dict) -> tuple[list[str], list[list[str]]]:
    """The baseline's and the shared prompt's dev scores on each target, as the shared prompt's run recorded them,
    and the objective over them."""
    shared, models = part["shared"], part["matrix"]["models"]
    body = [[row, *(fmt(scores.get(m)) for m in models), fmt(shared["values"].get(row))]
            for row, scores in part["dev"].items()]
    return ["prompt (dev)", *models, shared["objective"]], body


def dev_table(part: dict) -> list[str]:
    return table(*dev_rows(part)) if part.get("shared") else []


def task_markdown(part: dict) -> list[str]:
    matrix = part["matrix"]
    cells = {(c["prompt"], c["model"]): c for c in matrix["cells"]}
    grid = [[row, *(cell_text(cells.get((row, m))) for m in matrix["models"])] for row in matrix["rows"]]
    prompts = [[p["row"], p["source"], p.get("detail", "")] for p in part["prompts"]]
    lines = [f"## {part['task']}", "",
             f"Metric `{part['metric']}` ({'higher' if matrix['higher_is_better'] else 'lower'} is better) on "
             f"{part['n_test']} held-out test documents, the same for every model.", "",
             *table(["prompt", "from", "detail"], prompts, 3), "", "### Transfer matrix", "",
             "Each prompt (row) on each model (column); beside a prompt other than the baseline, its paired difference "
             "from the same model at the baseline (95% CI; * where the interval excludes 0).", "",
             *table(["prompt", *matrix["models"]], grid), "",
             *(["### Shared prompt", "", shared_text(part), "", *dev_table(part), ""] if part.get("shared") else []),
             "### Rankings", "", *rankings_table(matrix), "",
             tau_text(matrix), "", "### Rank changes", "", *changes_table(matrix)]
    failed = part.get("failed") or []
    if failed:
        lines += ["", "Left out: " + "; ".join(failed)]
    return lines


def markdown(result: dict) -> str:
    targets = ", ".join(f"`{t['label']}` ({t['model']}" + (f" {t['model_args']}" if t["model_args"] else "") + ")"
                        for t in result["targets"])
    lines = [f"# {result['title']}", "", f"Targets: {targets}.", "", result["about"], ""]
    for part in result["tasks"]:
        lines += [*task_markdown(part), ""]
    ledger = result.get("ledger")
    if ledger:
        lines.append("Ledger: " + "; ".join(f"{name}: {ledger_text(used)}" for name, used in ledger.items()) + ".")
    for line in result.get("notes", []):
        lines += ["", line]
    return "\n".join(lines).rstrip() + "\n"


def ledger_text(used: dict) -> str:
    """e.g. "4 optimizer calls, 54 target requests (20 answered by the cache), $0.0120"."""
    target = used["target"]
    cached = f" ({target['cache_hits']:,} answered by the cache)" if target.get("cache_hits") else ""
    return f"{used['optimizer']['calls']:,} optimizer calls, {target['calls']:,} target requests{cached}, {money(used)}"


def _csv(columns, records) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n", extrasaction="ignore")
    writer.writeheader()
    for record in records:
        writer.writerow(record)
    return buffer.getvalue()


def cells_csv(result: dict) -> str:
    """One line per (task, prompt, model)."""
    records = []
    for part in result["tasks"]:
        for c in part["matrix"]["cells"]:
            ci = c.get("ci") or [None, None]
            records.append({**c, "task": part["task"], "metric": part["metric"], "ci_low": ci[0], "ci_high": ci[1]})
    return _csv(CELL_COLUMNS, records)


def rankings_csv(result: dict) -> str:
    """One line per (task, setting, model)."""
    return _csv(RANK_COLUMNS, [{"task": part["task"], "setting": r["setting"], **o}
                               for part in result["tasks"] for r in part["matrix"]["rankings"] for o in r["order"]])
