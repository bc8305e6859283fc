"""The local executor: the cells one after another in this process, as `optimize` runs them. A target given
to the grid is shared by every cell; else each cell's target is loaded as it comes, and kept while the cells
after it run the same one (`session.Targets`: one loaded at a time). On one machine two llama.cpp workloads
make each many times slower, so the embedded models never share cores: this is the default."""

from __future__ import annotations

from lm_eval_abo.infra.errors import one_line
from lm_eval_abo.run.grid.cells import FAILED, report_of, run_cell
from lm_eval_abo.run.session import target_of
from lm_eval_abo.run.targets import Targets


class Local:
    name = "local"

    def __enter__(self) -> Local:
        return self

    def __exit__(self, *exc) -> None:
        pass

    def check_output(self, output) -> None:
        """One machine sees its own output directory."""

    def run(self, cells, done, lm=None, out=print) -> None:
        """Each cell in turn, its lines to `out`; `done(report)` after each. `lm`: a loaded target every cell
        shares, or the `Targets` the cells load theirs from (default: new ones)."""
        targets = lm if isinstance(lm, Targets) else Targets() if lm is None else None
        for cell in cells:
            try:
                mine = targets.get(target_of(cell.config)) if targets else lm
            except Exception as e:  # a target that does not load fails its cell, as it would fail its run
                done(report_of(cell, FAILED, one_line(e)))
                continue
            done(run_cell(cell, mine, out))
