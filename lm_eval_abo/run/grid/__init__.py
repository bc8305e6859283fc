"""Grids of `optimize` runs (tasks x models x methods x seeds) through one executor: `local`, one cell after
another in this process, or `ray`, each cell a Ray task on a cluster; one projection, one set of caps and
one ledger for the whole grid (`driver`), the cells' own folders, locks and `--resume` (`cells`)."""

from lm_eval_abo.run.grid.driver import EXECUTORS, GridResult, run_grid

__all__ = ["EXECUTORS", "GridResult", "run_grid"]
