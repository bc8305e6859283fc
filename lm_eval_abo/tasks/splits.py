"""The three logical splits of a run, for any task: train (reflection), dev (selection), test (once, at the end).

A task's own splits are used where it has them: `training_split` is train, `validation_split` is dev,
and the split lm-eval evaluates (`test_split`, else `validation_split`) is test. A split the task lacks is
carved out of another (seeded, disjoint, of the size `--train-limit`/`--dev-limit` give, 50 when those say
"all"), preferring the training and validation splits so that test loses nothing; where test is the only
split (all of BIG-Bench-Hard), train and dev come out of it and the final evaluation runs on the rest.
No document is in two logical splits, so none used for reflection or selection is ever scored as test.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from lm_eval_abo.infra.errors import AboError

LOGICAL = ("train", "dev", "test")
CARVED_DEFAULT = 50  # documents carved out for a missing split when its limit is "all"


@dataclass(frozen=True)
class Part:
    """A logical split: documents of one of the task's splits, by their position in it."""

    split: str
    indices: tuple[int, ...]
    carved: bool = False


@dataclass(frozen=True)
class Splits:
    train: Part
    dev: Part
    test: Part

    def __getitem__(self, logical: str) -> Part:
        return getattr(self, logical)

    def carved(self) -> dict[str, str]:
        """Logical split -> the task split it was carved from, for the carved ones."""
        return {name: self[name].split for name in LOGICAL if self[name].carved}


def doc_id(doc: dict, split: str, index: int) -> str:
    """How a run records a document: its own id field where it has one, else its split and position."""
    value = doc.get("id")
    return str(value) if isinstance(value, (str, int)) and not isinstance(value, bool) else f"{split}:{index}"


def task_splits(config) -> dict[str, str | None]:
    """The task's own split behind each logical split (None where it has none). `config`: its TaskConfig,
    or its config as read from the YAML (a dict), so that a task lm-eval cannot build fails here first."""
    def get(name: str):
        return config.get(name) if type(config) is dict else getattr(config, name, None)  # TaskConfig: a dict too

    test = get("test_split") or get("validation_split")
    if test is None:
        raise AboError(f"task {get('task')!r} has neither a test_split nor a validation_split, so lm-eval has no "
                       "documents to evaluate; set test_split: <split> in its YAML to one of its dataset's splits")
    return {
        "train": get("training_split") if get("training_split") not in (None, test) else None,
        "dev": get("validation_split") if get("validation_split") not in (None, test) else None,
        "test": test,
    }


def plan(config, sizes: dict[str, int], seed: int, train_limit: int | None, dev_limit: int | None,
         test_limit: int | None) -> Splits:
    """The logical splits of a task (`config`: its TaskConfig; `sizes`: documents per task split)."""
    own = task_splits(config)
    free = {split: list(range(n)) for split, n in sizes.items()}  # documents no logical split has taken yet
    parts: dict[str, Part] = {}
    for name, limit in (("train", train_limit), ("dev", dev_limit)):
        if own[name] is not None:
            continue
        donor = next(s for s in (own["train"], own["dev"], own["test"]) if s is not None and s in free)
        want = limit or CARVED_DEFAULT
        if len(free[donor]) - want < 1:  # the donor is another logical split's source: it keeps one at least
            raise AboError(
                f"task {config.task!r} has no {name} split, and its {donor!r} split has {len(free[donor])} documents left: "
                f"too few to carve {want} {name} documents out of it and keep some; lower --{name}-limit")
        shuffled = list(free[donor])
        random.Random(f"carve:{seed}:{name}").shuffle(shuffled)
        taken = sorted(shuffled[:want])
        free[donor] = [i for i in free[donor] if i not in set(taken)]
        parts[name] = Part(donor, tuple(taken), carved=True)
    for name in ("train", "dev"):
        if name not in parts:
            parts[name] = Part(own[name], tuple(free[own[name]]))
    test = free[own["test"]]
    parts["test"] = Part(own["test"], tuple(test[:test_limit] if test_limit else test))
    for name in LOGICAL:
        if not parts[name].indices:
            raise AboError(f"the {name} split of task {config.task!r} is empty")
    return Splits(**parts)
