"""One cap for a whole grid: `--max-cost`, `--max-target-tokens` and `--max-optimizer-calls` split into a
share per cell, in proportion to each cell's projection.

Why shares, and not one Ray actor that holds the budget and every cell asks before each call:
- A cell's stop does not depend on which cells ran before it or beside it, so the same seeds give the same
  prompts on one machine and on a cluster, and a rerun gives the same grid.
- Each cell already keeps to its own caps before every optimizer call and target pass (`cost.ledger.Budget`),
  with its test evaluation kept aside; its share is just its caps. Nothing new runs between the calls, and
  no call waits on a round trip to an actor on another node.
- A share survives the driver: a resumed cell keeps to it from its saved ledger, where an actor's running
  count would die with the driver that started it.
The price: a cell that spends less than its share leaves the rest unspent; no other cell takes it over.
On `--resume` the caps less what the finished cells spent are shared among the cells still to run.
"""

from __future__ import annotations

import math
from dataclasses import replace

from lm_eval_abo.cost.ledger import Caps, Ledger

FIELDS = {"max_cost": lambda ledger: ledger.cost_usd, "max_target_tokens": lambda ledger: ledger.target.tokens,
          "max_optimizer_calls": lambda ledger: ledger.optimizer.calls}


def shares(caps: Caps, projected: list[Ledger], spent: Ledger) -> list[Caps]:
    """Each cell's caps: what `caps` leave after `spent` (the finished cells), in proportion to the cell's
    projection of each measure (equal shares where the projection is zero everywhere). Whole numbers are
    rounded down, so the shares never add up to more than the grid's cap."""
    out = [{} for _ in projected]
    for name, measure in FIELDS.items():
        cap = getattr(caps, name)
        if cap is None:
            continue
        left = max(cap - measure(spent), 0)
        weights = [measure(p) for p in projected]
        whole = sum(weights)
        for i, weight in enumerate(weights):
            share = left * (weight / whole if whole else 1 / len(projected))
            out[i][name] = share if name == "max_cost" else math.floor(share)
    return [Caps(**given) for given in out]


def within(own: Caps, share: Caps) -> Caps:
    """A cell's own caps (its settings) under its share of the grid's: the smaller of each."""
    smaller = {name: min(v for v in (getattr(own, name), getattr(share, name)) if v is not None)
               for name in FIELDS if getattr(own, name) is not None or getattr(share, name) is not None}
    return replace(own, **smaller)
