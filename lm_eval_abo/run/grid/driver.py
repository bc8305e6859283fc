"""A grid of `optimize` runs through one executor: the cells named and checked, the whole grid projected
before any call, the grid's caps shared among its cells (`shares`), one bar of cells done with the cost
so far and the cells failed, and the grid's table and ledger (the sum of its cells') written as
`<output>/grid.md` and `grid.json`.

- `--resume` skips the cells that finished (evaluated on test) and continues the others from their last
  saved round; without it, a cell whose folder holds an earlier run is refused before anything runs.
- A cell that fails reports its one-line error in the table (refused while it was projected, or failed while
  it ran); the others go on; `GridResult.failed` says which failed.
- The caller holds the lock of the output folder, if it wants one; each cell holds its own run folder's.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from lm_eval_abo.config import OptimizeConfig
from lm_eval_abo.cost.ledger import Caps, Ledger, total
from lm_eval_abo.infra.errors import AboError
from lm_eval_abo.infra.files import write_json, write_text_atomic
from lm_eval_abo.reports import grid as text
from lm_eval_abo.run.grid.cells import EARLIER, FAILED, Cell, CellReport, report_of
from lm_eval_abo.run.grid.shares import shares, within
from lm_eval_abo.run.optimize import finished, plan_run
from lm_eval_abo.run.session import caps_of, resolve_run

EXECUTORS = ("local", "ray")


@dataclass(frozen=True)
class GridResult:
    reports: tuple[CellReport, ...]  # in the order of the cells
    ledger: Ledger  # the sum of the cells' ledgers

    @property
    def failed(self) -> list[CellReport]:
        return [r for r in self.reports if r.failed]


def executor_of(name: str, address: str | None):
    if name not in EXECUTORS:
        raise AboError(f"--executor must be one of {', '.join(EXECUTORS)}, got {name!r}")
    if address and name != "ray":
        raise AboError("--ray-address goes with --executor ray")
    if name == "local":
        from lm_eval_abo.run.grid.local import Local

        return Local()
    from lm_eval_abo.run.grid.on_ray import OnRay

    return OnRay(address)


def cells_of(configs: list[OptimizeConfig], output: str | Path, own_caches: bool) -> list[Cell]:
    """The cells of these runs under the grid's `output` (absolute paths: a task may run elsewhere).
    `own_caches`: each cell gets its own file of lm-eval's target cache (its sqlite file has one writer)."""
    root = Path(output).resolve()
    cells = []
    for config in configs:
        config = replace(config, output=str(Path(config.output).resolve()))
        run_dir = Path(config.output) / config.task / config.method
        if not run_dir.is_relative_to(root):
            raise AboError(f"the run directory {run_dir} is not under the grid's --output {root}")
        name = str(run_dir.relative_to(root))
        if own_caches and config.use_cache:
            config = replace(config, use_cache=f"{Path(config.use_cache).resolve()}-{name.replace('/', '-')}")
        cells.append(Cell(name, config, str(root)))
    names = [c.name for c in cells]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise AboError(f"the grid names a run twice: {', '.join(twice)}")
    return cells


def run_grid(configs: list[OptimizeConfig], output: str | Path, executor: str = "local", address: str | None = None,
             caps: Caps = Caps(), resume: bool = False, lm=None, out=print, cell_out=None) -> GridResult:
    """Run every config's `optimize` as a cell of one grid under `output`, on `executor` ("local", or "ray" at
    `address`, else a local Ray); `caps` hold for the grid as a whole. `lm`: a loaded target the local
    executor shares among its cells, or the `session.Targets` it loads each cell's from (default: new ones);
    `out` takes the grid's lines, `cell_out` the lines of the cells run here (default: above the bar; a Ray
    cell writes its lines to its log)."""
    from tqdm import tqdm

    runner = executor_of(executor, address)
    cells = cells_of(configs, output, own_caches=runner.name != "local")
    root = Path(output).resolve()
    if not resume:
        earlier = [c.folder.dir for c in cells if c.folder.state.exists()]
        if earlier:
            raise AboError(f"{earlier[0]} holds an earlier run; pass --resume to continue the grid, or choose "
                           "another --output")
    done_before = [c for c in cells if resume and finished(c.config)]
    reports = {c.name: report_of(c, EARLIER) for c in done_before}
    to_run = [c for c in cells if c.name not in reports]
    with runner:
        root.mkdir(parents=True, exist_ok=True)
        runner.check_output(root)
        to_run, refused = _shared_caps(to_run, caps, [reports[c.name] for c in done_before], out,
                                       resume or runner.name != "local")
        for report in refused:
            reports[report.name] = report
            out(f"cell {report.name}: {report.status}: {report.error}")
        bar = tqdm(total=len(cells), initial=len(reports), desc="grid", unit="cell", dynamic_ncols=True)
        bar.set_postfix_str(text.progress_text(reports.values()))

        def done(report: CellReport) -> None:
            reports[report.name] = report
            bar.update(1)
            bar.set_postfix_str(text.progress_text(reports.values()))
            tqdm.write(f"cell {report.name}: {report.status}" + (f": {report.error}" if report.error else ""))

        try:
            runner.run(to_run, done, lm=lm, out=cell_out or tqdm.write)
        finally:
            bar.close()
    ordered = tuple(reports[c.name] for c in cells if c.name in reports)
    result = GridResult(ordered, total(Ledger.from_dict(r.ledger) for r in ordered))
    table = text.table_text(ordered, result.ledger)
    write_json(root / "grid.json", {"executor": runner.name, "cells": [r.to_dict() for r in ordered],
                                    "ledger": result.ledger.to_dict(), "failed": len(result.failed)})
    write_text_atomic(root / "grid.md", table + "\n")
    out(table)
    return result


def _shared_caps(cells: list[Cell], caps: Caps, earlier: list[CellReport], out, resume: bool
                 ) -> tuple[list[Cell], list[CellReport]]:
    """The cells with their share of the grid's caps, after printing the grid's projection, and the reports
    of the cells refused while they were projected (a user's error in their settings); `resume`: each
    continues its saved rounds (a cell that Ray retries after its node died continues from its last round)."""
    plans, planned, refused = [], [], []
    for cell in cells:
        try:
            config, method, params = resolve_run(cell.config)
            plans.append(plan_run(config, method, params)[1].total)
            planned.append(cell)
        except AboError as e:
            refused.append(report_of(cell, FAILED, str(e)))
    spent = total(Ledger.from_dict(r.ledger) for r in earlier)
    given = shares(caps, plans, spent) if plans else []
    out(text.projection_text([c.name for c in planned], plans, given, caps, spent, len(earlier)))
    shared = []
    for cell, share in zip(planned, given):
        mine = within(caps_of(cell.config), share)
        config = replace(cell.config, max_cost=mine.max_cost, max_target_tokens=mine.max_target_tokens,
                         max_optimizer_calls=mine.max_optimizer_calls, resume=cell.config.resume or resume)
        shared.append(replace(cell, config=config))
    return shared, refused
