"""A grid's text: the projection of all its cells before any call, the line under its progress bar, and
its table of cells (status, rounds, scores, ledger, the one-line error of a failed cell)."""

from __future__ import annotations

from lm_eval_abo.cost.ledger import Caps, Ledger, total
from lm_eval_abo.reports.markdown import fmt, table
from lm_eval_abo.reports.run_report import money, tokens_text

CAPS = (("max_cost", "--max-cost", lambda v: f"${v:.4g}"), ("max_target_tokens", "--max-target-tokens", "{:,}".format),
        ("max_optimizer_calls", "--max-optimizer-calls", str))


def _ledger_cells(ledger: Ledger) -> list:
    opt, tgt = ledger.optimizer.to_dict(), ledger.target.to_dict()
    return [opt["calls"], tokens_text(opt), tgt["calls"], tokens_text(tgt), money(ledger.to_dict())]


def projection_text(names: list[str], projected: list[Ledger], shares: list[Caps], caps: Caps, spent: Ledger,
                    earlier: int) -> str:
    """The grid's projection: each cell still to run (at most: caches and early stops make it less), the
    total, and each cell's share of the grid's caps."""
    shown = [(name, label) for name, label, _ in CAPS if getattr(caps, name) is not None]
    header = ["cell", "optimizer calls", "optimizer tokens", "target requests", "target tokens", "total $",
              *(f"share of {label}" for _, label in shown)]
    rows = [[name, *_ledger_cells(ledger), *(_cap(share, n) for n, _ in shown)]
            for name, ledger, share in zip(names, projected, shares)]
    rows.append(["grid (projected)", *_ledger_cells(total(projected)), *("" for _ in shown)])
    lines = [f"grid: {len(names)} cells to run"
             + (f" ({earlier} finished earlier, which spent {money(spent.to_dict())})" if earlier else ""),
             "projected before any call:", *table(header, rows)]
    if shown:
        lines.append("caps over the whole grid: " + "; ".join(f"{label} {_cap(caps, name)}" for name, label in shown)
                     + ": each cell keeps to its share")
    return "\n".join(lines)


def _cap(caps: Caps, name: str) -> str:
    value = getattr(caps, name)
    form = next(f for n, _, f in CAPS if n == name)
    return "-" if value is None else form(value)


def progress_text(reports) -> str:
    """The line beside the bar: what the cells reported so far cost, and how many failed."""
    spent = total(Ledger.from_dict(r.ledger) for r in reports)
    return f"{money(spent.to_dict())} so far, {sum(r.failed for r in reports)} failed"


def table_text(reports, ledger: Ledger) -> str:
    """The grid's table: one row a cell, then the grid's ledger (the sum of the cells')."""
    rows = [[r.name, r.status, r.rounds if r.rounds >= 0 else "-", fmt(r.dev), fmt(r.test),
             *_ledger_cells(Ledger.from_dict(r.ledger)), r.host or "-", r.error or ""] for r in reports]
    rows.append(["grid", f"{sum(not r.failed for r in reports)} of {len(reports)} done", "", "", "",
                 *_ledger_cells(ledger), "", ""])
    return "\n".join(table(["cell", "status", "last round", "dev", "test", "optimizer calls", "optimizer tokens",
                            "target requests", "target tokens", "total $", "host", "error"], rows))
