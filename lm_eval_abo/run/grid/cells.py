"""A grid's cell: one `optimize` run with its own run directory under the grid's output, run on whichever
executor, and the report it hands back (done, done earlier, or failed with its one-line error), read from
what the run wrote to its folder, so a cell reports the same wherever it ran."""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass
from pathlib import Path

from lm_eval_abo.config import OptimizeConfig
from lm_eval_abo.cost.ledger import Ledger
from lm_eval_abo.infra.errors import one_line
from lm_eval_abo.infra.files import append_line, read_json
from lm_eval_abo.run.folder import RunFolder
from lm_eval_abo.run.optimize import finished, optimize

DONE, EARLIER, FAILED = "done", "done earlier", "failed"


@dataclass(frozen=True)
class Cell:
    """One optimize run of a grid: `name` is its run directory relative to the grid's output, `root`."""

    name: str
    config: OptimizeConfig
    root: str

    @property
    def folder(self) -> RunFolder:
        c = self.config
        return RunFolder(c.output, c.task, c.method, c.export_name)

    @property
    def log(self) -> Path:
        """Where the cell's lines go when it runs away from the driver's console."""
        return Path(self.root) / "grid-logs" / f"{self.name.replace('/', '__')}.log"


@dataclass(frozen=True)
class CellReport:
    """What a cell did: its status, its one-line error, its ledger (as its folder records it) and scores."""

    name: str
    status: str
    ledger: dict  # Ledger.to_dict(): what the run spent, its test evaluation included once evaluated
    rounds: int  # the last round completed (0: the baseline's round; -1: none)
    error: str | None = None
    dev: float | None = None
    test: float | None = None
    seconds: float = 0.0
    host: str | None = None

    @property
    def failed(self) -> bool:
        return self.status == FAILED

    def to_dict(self) -> dict:
        return {"name": self.name, "status": self.status, "error": self.error, "rounds": self.rounds, "dev": self.dev,
                "test": self.test, "seconds": self.seconds, "host": self.host, "ledger": self.ledger}


def report_of(cell: Cell, status: str, error: str | None = None, seconds: float | None = None) -> CellReport:
    """A cell's report as its folder records it: the finished artifact, else the last saved round.
    `seconds`: the wall time it took here; none (a cell done earlier) takes its artifact's search and test."""
    outcome = finished(cell.config)
    host = socket.gethostname()
    if outcome is not None and error is None:
        scores, usage = outcome.artifact_data.scores, outcome.artifact_data.usage
        recorded = usage.get("seconds", 0.0) + usage.get("test_seconds", 0.0)
        return CellReport(cell.name, status, Ledger.from_dict(usage).to_dict(), outcome.result.last_round,
                          dev=scores["dev"]["value"], test=scores["test"]["value"],
                          seconds=round(recorded if seconds is None else seconds, 1), host=host)
    state = cell.folder.state
    saved = read_json(state)["state"] if state.exists() else None
    ledger = Ledger.from_dict(saved["ledger"]) if saved else Ledger()
    return CellReport(cell.name, status, ledger.to_dict(), saved["round"] if saved else -1, error=error,
                      seconds=round(seconds or 0.0, 1), host=host)


def run_cell(cell: Cell, lm=None, out=None) -> CellReport:
    """Run a cell (continuing its saved rounds); a failure is its report's one line, never raised.
    `lm`: an already loaded target to reuse; `out`: where its lines go (default: its log file)."""
    out = out or (lambda line: append_line(cell.log, line))
    started = time.time()
    try:
        optimize(cell.config, out=out, lm=lm)
    except Exception as e:  # a user's error (AboError) or a bug: the cell fails, the grid goes on
        return report_of(cell, FAILED, one_line(e), time.time() - started)
    return report_of(cell, DONE, seconds=time.time() - started)
