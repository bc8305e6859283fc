"""`lm-eval-abo leaderboard`: method x task x model tables and plots from lm-eval results.

Scores come from lm-eval's own results files; each is joined to the artifact that made its prompt (via
`configs.<task>.metadata.abo`: the source path, checked by the prompt's sha256) for the optimizer's
calls and tokens, the target's requests and tokens, the cost of each and of both, the wall time and the best dev
score of every round. Per (task, model, method) the
newest result is kept. Written as markdown, CSV and one self-contained HTML page whose plots (matplotlib,
embedded as PNG data) show per task the score of each method and the dev score per round.
"""

from __future__ import annotations

import base64
import csv
import html
import io
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from lm_eval_abo.artifact import store
from lm_eval_abo.infra import stats
from lm_eval_abo.infra.errors import AboError
from lm_eval_abo.infra.files import write_text_atomic
from lm_eval_abo.reports import results as lm_results
from lm_eval_abo.reports.markdown import fmt, table
from lm_eval_abo.reports.run_report import money, tokens_text

PLOTS_MISSING = "plots need matplotlib: pip install 'lm-eval-abo[plots]'"
COLUMNS = ("task", "model", "method", "metric", "score", "stderr", "n", "baseline", "difference", "ci_low", "ci_high",
           "optimizer_calls", "tokens", "target_requests", "target_tokens", "target_tokens_estimated", "cost_usd",
           "optimizer_cost_usd", "target_cost_usd", "optimize_seconds", "eval_seconds", "dev_by_round", "results_file",
           "artifact")


@dataclass
class Row:
    result: lm_results.TaskResult
    artifact: store.Artifact | None = None
    artifact_path: Path | None = None
    against_baseline: dict = field(default_factory=dict)  # baseline score, paired difference and interval

    @property
    def metric(self) -> str:
        return self.result.primary

    @property
    def score(self) -> tuple[float | None, float | None]:
        return self.result.metrics[self.metric]

    def usage(self, side: str) -> dict:
        """The run's ledger of one side ("optimizer" or "target"); empty without an artifact."""
        return (self.artifact.usage if self.artifact else {}).get(side) or {}

    def cost(self, *sides: str) -> float | None:
        """Dollars of the given sides together; None where a price was unknown (or no artifact)."""
        used = [self.usage(side) for side in sides]
        if not all(u and u.get("cost_known", True) for u in used):
            return None
        return round(sum(u["cost_usd"] for u in used), 10)

    @property
    def dev_by_round(self) -> list[float]:
        return [r["best"]["dev"] for r in (self.artifact.trace if self.artifact else [])]

    def record(self) -> dict:
        value, stderr = self.score
        optimizer, target = self.usage("optimizer"), self.usage("target")
        return {
            "task": self.result.task, "model": self.result.model, "method": self.result.method, "metric": self.metric,
            "score": value, "stderr": stderr, "n": self.result.n, "baseline": self.against_baseline.get("baseline"),
            "difference": self.against_baseline.get("difference"),
            "ci_low": (self.against_baseline.get("interval") or [None, None])[0],
            "ci_high": (self.against_baseline.get("interval") or [None, None])[1], "optimizer_calls": optimizer.get("calls"),
            "tokens": _tokens(optimizer), "target_requests": target.get("calls"), "target_tokens": _tokens(target),
            "target_tokens_estimated": target.get("estimated"), "cost_usd": self.cost("optimizer", "target"),
            "optimizer_cost_usd": self.cost("optimizer"), "target_cost_usd": self.cost("target"),
            "optimize_seconds": (self.artifact.usage.get("seconds") if self.artifact else None),
            "eval_seconds": self.result.eval_seconds, "dev_by_round": ";".join(f"{v:.4f}" for v in self.dev_by_round),
            "results_file": str(self.result.file), "artifact": str(self.artifact_path or ""),
        }


@dataclass
class Board:
    rows: list[Row]
    markdown: str
    files: list[Path] = field(default_factory=list)


# --- joining results to artifacts ---------------------------------------------------------------


def _load_artifact(path: Path) -> store.Artifact | None:
    try:
        return store.load(path)
    except AboError:
        return None


def artifact_index(dirs) -> dict[str, list[tuple[Path, store.Artifact]]]:
    """Artifacts under the given directories (optimize's best.yaml files, and every artifact YAML in
    directories named with --artifacts), by prompt sha256."""
    index: dict[str, list] = {}
    for directory, pattern in dirs:
        for path in sorted(Path(directory).rglob(pattern)):
            artifact = _load_artifact(path)
            if artifact is not None:
                index.setdefault(artifact.prompt.sha256(), []).append((path, artifact))
    return index


def find_artifact(result: lm_results.TaskResult, index) -> tuple[Path | None, store.Artifact | None]:
    """The artifact a result was evaluated with: its recorded source path (relative to where the run
    started, so tried against the results file's parent directories), else one with the same prompt."""
    sha, source = result.abo.get("prompt_sha256"), result.abo.get("source")
    if not sha or not source or source in ("inline", "default", "baseline"):  # a task's own prompt has no artifact
        return None, None
    path = Path(source)
    for candidate in [path] if path.is_absolute() else [Path.cwd() / path, *(p / path for p in result.file.parents)]:
        if candidate.is_file():
            artifact = _load_artifact(candidate)
            if artifact and artifact.prompt.sha256() == sha:
                return candidate, artifact
    for path, artifact in index.get(sha, []):  # moved since: the same prompt, task and method
        if artifact.task == result.task and artifact.method == result.method:
            return path, artifact
    return None, None


def against_baseline(row: Row, baseline: Row | None) -> dict:
    """The row's prompt against the baseline on the same test examples: from both sides' per-sample logs
    where they exist, else as the optimize run that made the artifact compared them."""
    if baseline is not None and baseline is not row:
        metric = row.metric
        a, b = baseline.result.per_example(metric), row.result.per_example(metric)
        if len(a.keys() & b.keys()) >= 2:
            c = stats.compare(a, b)  # per-example values: a mean metric's (a corpus metric's are not numbers)
            return {"baseline": c.baseline, "difference": c.difference, "interval": list(c.interval), "n": c.n}
    scores = row.artifact.scores if row.artifact else {}
    if "test_comparison" in scores:
        c = scores["test_comparison"]
        return {"baseline": scores["baseline_test"]["value"], "difference": c["difference"], "interval": c["interval"], "n": c["n"]}
    return {}


def collect(paths, artifact_dirs=()) -> list[Row]:
    found = lm_results.read_all(paths)
    index = artifact_index([(p, "best.yaml") for p in paths if Path(p).is_dir()] + [(d, "*.yaml") for d in artifact_dirs])
    newest = lm_results.latest(found, key=lambda r: (r.task, r.model, r.method))
    rows = [Row(r, *reversed(find_artifact(r, index))) for r in newest.values()]
    baselines = {(r.result.task, r.result.model): r for r in rows if r.result.method == "baseline"}
    for row in rows:
        if row.result.method != "baseline":
            row.against_baseline = against_baseline(row, baselines.get((row.result.task, row.result.model)))
    return sorted(rows, key=lambda row: (row.result.task, row.result.model, -(row.score[0] or 0.0), row.result.method))


# --- tables -------------------------------------------------------------------------------------


def _tokens(usage: dict) -> int | None:
    return usage["prompt_tokens"] + usage["completion_tokens"] if usage else None


def _cost(row: Row, *sides: str) -> str:
    if not all(row.usage(side) for side in sides):
        return "-"
    cost = row.cost(*sides)
    return money({"cost_usd": cost}) if cost is not None else "n/a"


def _difference(r: dict) -> str:
    if r["difference"] is None:
        return "-"
    return f"{r['difference']:+.3f} ({r['ci_low']:+.3f} to {r['ci_high']:+.3f})"


def table_rows(rows: list[Row]) -> list[list[str]]:
    out = []
    for row in rows:
        value, stderr = row.score
        r = row.record()
        target = row.usage("target")
        out.append([r["task"], r["model"], r["method"], f"{fmt(value)} ± {fmt(stderr)}", fmt(r["n"]), fmt(r["baseline"]),
                    _difference(r), fmt(r["optimizer_calls"]), fmt(r["tokens"]), tokens_text(target) if target else "-",
                    _cost(row, "optimizer", "target"), _cost(row, "optimizer"), _cost(row, "target"),
                    fmt(r["optimize_seconds"], 1), fmt(r["eval_seconds"], 1)])
    return out


HEADER = ["task", "model", "method", "score ± stderr", "n", "baseline", "vs baseline (95% CI)", "optimizer calls",
          "optimizer tokens", "target tokens", "cost", "optimizer cost", "target cost", "optimize s", "eval s"]


def pivot(rows: list[Row]) -> tuple[list[str], list[list[str]]]:
    """Method (and model) by task: the score of each."""
    tasks = sorted({r.result.task for r in rows})
    cells: dict[tuple[str, str], dict[str, str]] = {}
    for row in rows:
        cells.setdefault((row.result.method, row.result.model), {})[row.result.task] = fmt(row.score[0])
    header = ["method", "model", *tasks]
    return header, [[m, model, *(cells[(m, model)].get(t, "-") for t in tasks)] for (m, model) in sorted(cells)]


def markdown(rows: list[Row]) -> str:
    metrics = ", ".join(sorted({f"{r.result.task}: {r.metric}" for r in rows}))
    p_header, p_body = pivot(rows)
    return "\n".join([
        "## Leaderboard", "", f"Scores on each results file's examples (metrics: {metrics}); beside each optimized prompt, "
        "the baseline on the same examples and the paired difference with its 95% interval.", "",
        *table(HEADER, table_rows(rows), left=3), "", "### Method x task", "", *table(p_header, p_body, left=2),
    ])


def csv_text(rows: list[Row]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow(row.record())
    return buffer.getvalue()


# --- plots and HTML -----------------------------------------------------------------------------


def plots(rows: list[Row]) -> dict[str, str] | None:
    """Per task a PNG (base64): score per method and model with stderr bars, and the best dev score
    per round of each optimized prompt. None without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    images = {}
    for task in sorted({r.result.task for r in rows}):
        mine = [r for r in rows if r.result.task == task]
        traced = [r for r in mine if r.dev_by_round]
        fig, axes = plt.subplots(1, 2 if traced else 1, figsize=(11 if traced else 6, 3.6), squeeze=False)
        bars = axes[0][0]
        labels = [f"{r.result.method}\n{r.result.model}" for r in mine]
        values, errors = [r.score[0] or 0.0 for r in mine], [r.score[1] or 0.0 for r in mine]
        bars.bar(range(len(mine)), values, yerr=errors, capsize=4, color="#4c72b0")
        bars.set_xticks(range(len(mine)), labels, fontsize=8)
        bars.set_ylabel(mine[0].metric)
        if min(values) >= 0:  # scores and rates: show them on their whole scale
            bars.set_ylim(0, max(1.0, max(v + e for v, e in zip(values, errors))))
        bars.set_title(f"{task}: score per method")
        if traced:
            lines = axes[0][1]
            for r in traced:
                lines.plot(range(len(r.dev_by_round)), r.dev_by_round, marker="o", label=f"{r.result.method} ({r.result.model})")
            lines.set_xticks(range(max(len(r.dev_by_round) for r in traced)))
            lines.set_ylim(bars.get_ylim())
            lines.set_xlabel("round")
            lines.set_ylabel("best dev score")
            lines.set_title("dev score per round")
            lines.legend(fontsize=8)
        fig.tight_layout()
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=90)
        plt.close(fig)
        images[task] = base64.b64encode(buffer.getvalue()).decode("ascii")
    return images


def html_page(rows: list[Row], images: dict[str, str] | None) -> str:
    def table(header, body):
        head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
        cells = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in body)
        return f"<table><thead><tr>{head}</tr></thead><tbody>{cells}</tbody></table>"

    figures = (
        "".join(f'<h3>{html.escape(t)}</h3><img alt="plots for {html.escape(t)}" src="data:image/png;base64,{png}">' for t, png in images.items())
        if images else f"<p>{html.escape(PLOTS_MISSING)}</p>"
    )
    p_header, p_body = pivot(rows)
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>lm-eval-abo leaderboard</title>
<style>body{{font-family:system-ui,sans-serif;margin:2em;max-width:75em}}table{{border-collapse:collapse;margin:1em 0}}
td,th{{border:1px solid #ccc;padding:.3em .6em;text-align:right}}td:nth-child(-n+3),th:nth-child(-n+3){{text-align:left}}
img{{max-width:100%}}</style></head><body>
<h1>lm-eval-abo leaderboard</h1><p>Generated {stamp} from {len({r.result.file for r in rows})} lm-eval results file(s).</p>
<h2>Results</h2>{table(HEADER, table_rows(rows))}
<h2>Method x task</h2>{table(p_header, p_body)}
<h2>Plots</h2>{figures}
</body></html>
"""


def leaderboard(paths, out_dir, artifact_dirs=()) -> Board:
    rows = collect(paths, artifact_dirs)
    if not rows:
        raise AboError(f"no task scores in the results under {', '.join(map(str, paths))}")
    text = markdown(rows)
    images = plots(rows)
    out = Path(out_dir)
    files = [
        write_text_atomic(out / "leaderboard.md", text + "\n"),
        write_text_atomic(out / "leaderboard.csv", csv_text(rows)),
        write_text_atomic(out / "leaderboard.html", html_page(rows, images)),
    ]
    if images is None:
        text += f"\n\n({PLOTS_MISSING})"
    return Board(rows, text, files)
