"""The local executor: the cells one after another in this process, as `optimize` runs them, sharing one
loaded target. On one machine two llama.cpp workloads make each many times slower, so the embedded models
never share cores: this is the default."""

from __future__ import annotations

from lm_eval_abo.run.grid.cells import run_cell


class Local:
    name = "local"

    def __enter__(self) -> Local:
        return self

    def __exit__(self, *exc) -> None:
        pass

    def check_output(self, output) -> None:
        """One machine sees its own output directory."""

    def run(self, cells, done, lm=None, out=print) -> None:
        """Each cell in turn, its lines to `out`; `done(report)` after each."""
        for cell in cells:
            done(run_cell(cell, lm, out))
