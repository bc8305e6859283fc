"""A comparison as one self-contained HTML page: per task a heatmap of the transfer matrix (each cell's paired
difference from the model's baseline, annotated with the score) and a bump chart of the models' ranks under
each setting (matplotlib, embedded as PNG data), beside the same tables as the markdown."""

from __future__ import annotations

import base64
import html
import io
import math

from lm_eval_abo.reports.compare.text import (
    CHANGES_HEADER,
    cell_text,
    changes_rows,
    changes_text,
    dev_rows,
    ledger_text,
    rankings_rows,
    shared_text,
    signed,
    tau_text,
)
from lm_eval_abo.reports.markdown import fmt

PLOTS_MISSING = "plots need matplotlib: pip install 'lm-eval-abo[plots]'"


def _pyplot():
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    return plt


def _png(fig, plt) -> str:
    buffer = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buffer, format="png", dpi=90)
    plt.close(fig)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def heatmap(matrix: dict, plt) -> str:
    """Rows: prompts; columns: models; colour: the paired difference from the model's baseline (0 for the
    baseline row), text: the score and that difference."""
    rows, models = matrix["rows"], matrix["models"]
    cells = {(c["prompt"], c["model"]): c for c in matrix["cells"]}
    values = [[(cells[(r, m)].get("difference", 0.0) if (r, m) in cells else float("nan")) for m in models]
              for r in rows]
    reach = max([abs(v) for row in values for v in row if not math.isnan(v)] + [0.05])
    sign = 1 if matrix["higher_is_better"] else -1  # blue: better than the baseline
    fig, ax = plt.subplots(figsize=(3.2 + 1.5 * len(models), 1.4 + 0.55 * len(rows)))
    image = ax.imshow([[sign * v for v in row] for row in values], cmap="RdBu", vmin=-reach, vmax=reach, aspect="auto")
    for i, r in enumerate(rows):
        for j, m in enumerate(models):
            cell = cells.get((r, m))
            text = "-" if cell is None else fmt(cell["score"]) + (
                f"\n{signed(cell['difference'])}{'*' if cell['beyond'] else ''}" if "difference" in cell else "")
            dark = not math.isnan(values[i][j]) and abs(values[i][j]) > 0.6 * reach
            ax.text(j, i, text, ha="center", va="center", fontsize=8, color="white" if dark else "black")
    ax.set_xticks(range(len(models)), models, fontsize=8, rotation=20, ha="right")
    ax.set_yticks(range(len(rows)), rows, fontsize=8)
    ax.set_xlabel("model")
    ax.set_title("score; difference from the model's baseline (* beyond its 95% CI)", fontsize=9)
    fig.colorbar(image, ax=ax, label="better than baseline" if sign > 0 else "better (lower) than baseline")
    return _png(fig, plt)


def bump_chart(matrix: dict, plt) -> str | None:
    """x: the settings; y: each model's rank under it (1 at the top); one line per model."""
    settings = [r["setting"] for r in matrix["rankings"]]
    if not settings:
        return None
    by = {(r["setting"], o["model"]): o["rank"] for r in matrix["rankings"] for o in r["order"]}
    models = matrix["models"]
    fig, ax = plt.subplots(figsize=(3.2 + 1.8 * len(settings), 1.4 + 0.45 * len(models)))
    for k, model in enumerate(models):
        xs = [i for i, s in enumerate(settings) if (s, model) in by]
        if not xs:
            continue
        # models of the same rank are drawn a little apart, so each line stays visible
        tied = {i: [m for m in models if by.get((settings[i], m)) == by[(settings[i], model)]] for i in xs}
        ys = [by[(settings[i], model)] + 0.12 * (tied[i].index(model) - (len(tied[i]) - 1) / 2) for i in xs]
        ax.plot(xs, ys, marker="o", linewidth=2, label=model)
        ax.annotate(model, (xs[-1], ys[-1]), xytext=(8, 0), textcoords="offset points", va="center", fontsize=8)
        ax.annotate(model, (xs[0], ys[0]), xytext=(-8, 0), textcoords="offset points", va="center", ha="right",
                    fontsize=8)
    ax.set_xticks(range(len(settings)), settings, fontsize=8)
    ax.set_xlim(-0.9, len(settings) - 0.1)
    ax.set_yticks(range(1, len(models) + 1))
    ax.set_ylim(len(models) + 0.5, 0.5)
    ax.set_ylabel("rank")
    ax.set_title("rank of each model under each setting", fontsize=9)
    return _png(fig, plt)


def _table(header, body, text: bool = False) -> str:
    """`text`: every column left-aligned (else the first, and numbers right)."""
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    rows = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in r) + "</tr>" for r in body)
    return f'<table{" class=text" if text else ""}><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>'


def _task_html(part: dict, plt) -> str:
    matrix = part["matrix"]
    cells = {(c["prompt"], c["model"]): c for c in matrix["cells"]}
    name = html.escape(part["task"])
    prompts = [[p["row"], p["source"], p.get("detail", "")] for p in part["prompts"]]
    grid = [[r, *(cell_text(cells.get((r, m))) for m in matrix["models"])] for r in matrix["rows"]]
    out = [f"<h2>{name}</h2>", f"<p>Metric <code>{html.escape(part['metric'])}</code> on {part['n_test']} "
           "held-out test documents, the same for every model.</p>",
           _table(["prompt", "from", "detail"], prompts, text=True),
           "<h3>Transfer matrix</h3><p>Score; beside a prompt other than the baseline, the paired difference from the "
           "same model at the baseline (95% CI; * where the interval excludes 0).</p>",
           _table(["prompt", *matrix["models"]], grid)]
    if plt is not None:
        out.append(_image(f"heatmap of the transfer matrix of {name}", heatmap(matrix, plt)))
    if part.get("shared"):
        out += ["<h3>Shared prompt</h3>", f"<p>{html.escape(shared_text(part))}</p>", _table(*dev_rows(part))]
    out += ["<h3>Rankings</h3>", _table(*rankings_rows(matrix)), f"<p>{html.escape(tau_text(matrix))}</p>"]
    bump = bump_chart(matrix, plt) if plt is not None else None
    if bump:
        out.append(_image(f"bump chart of the ranks of {name}", bump))
    out += ["<h3>Rank changes</h3>", f"<p>{html.escape(changes_text(matrix))}</p>"]
    if matrix["changes"]:
        out.append(_table(CHANGES_HEADER, changes_rows(matrix)))
    return "\n".join(out)


def _image(alt: str, png: str) -> str:
    return f'<img alt="{alt}" src="data:image/png;base64,{png}">'


def html_page(result: dict) -> str:
    plt = _pyplot()
    targets = ", ".join(f"{t['label']} ({t['model']})" for t in result["targets"])
    body = "\n".join(_task_html(part, plt) for part in result["tasks"])
    missing = "" if plt is not None else f"<p>{html.escape(PLOTS_MISSING)}</p>"
    ledger = "".join(f"<li>{html.escape(name)}: {html.escape(ledger_text(used))}</li>"
                     for name, used in (result.get("ledger") or {}).items())
    body += f"\n<h2>Ledger</h2><ul>{ledger}</ul>" if ledger else ""
    title = html.escape(result["title"])
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>body{{font-family:system-ui,sans-serif;margin:2em;max-width:75em}}table{{border-collapse:collapse;margin:1em 0}}
td,th{{border:1px solid #ccc;padding:.3em .6em;text-align:right}}
td:first-child,th:first-child,.text td,.text th{{text-align:left}}
img{{max-width:100%;display:block;margin:1em 0}}</style></head><body>
<h1>{title}</h1><p>Targets: {html.escape(targets)}.</p><p>{html.escape(result["about"])}</p>{missing}
{body}
</body></html>
"""
