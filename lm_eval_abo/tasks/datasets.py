"""Dataset loaders the abo_* task YAMLs call as lm-eval's `custom_dataset`.

lm-eval calls them as `custom_dataset(**metadata, **dataset_kwargs)`: the task's `dataset_kwargs` name the
source, and `--metadata` (which also carries every `model_args` key, hence `**_ignored`) sets the knobs:

  abo_seed        seed of the synthetic generators and of the train/dev/test partition (default 1234)
  abo_n_train     train examples (default 50)
  abo_n_dev       dev examples (default 50)
  abo_n_test      test examples (synthetic default 200; public data default: all that remain)
  abo_difficulty  synthetic tasks only: 1 (easy, default), 2 (about BIG-Bench-Hard's level), 3 (hard)
  abo_data_dir    public tasks only: a local copy of the dataset, used instead of the Hugging Face Hub

Every loader returns a `datasets.DatasetDict` with the splits train, dev and test, whose rows are
`{"id", "input", "target"}`; ids are stable hashes of the text, so a run can record split membership.
"""

from __future__ import annotations

import json
import random
from functools import lru_cache
from pathlib import Path

from lm_eval_abo.infra.errors import AboError
from lm_eval_abo.infra.files import read_json, read_text
from lm_eval_abo.tasks.synthetic import example_id, generate_split

DEFAULT_SEED = 1234
DEFAULT_SIZES = (50, 50, 200)
SPLITS = ("train", "dev", "test")


def _dataset_dict(splits: dict[str, list[dict]]):
    import datasets  # heavy import, only when a task is built

    return datasets.DatasetDict({name: datasets.Dataset.from_list(rows) for name, rows in splits.items()})


def _size(value, name: str, default: int | None) -> int | None:
    if value is None:
        return default
    try:
        size = int(value)
    except (TypeError, ValueError):
        raise AboError(f"{name} must be a whole number, got {value!r}") from None
    if size < 1:
        raise AboError(f"{name} must be at least 1, got {size}")
    return size


def synthetic(
    kind: str,
    abo_seed=DEFAULT_SEED,
    abo_difficulty=1,
    abo_n_train=None,
    abo_n_dev=None,
    abo_n_test=None,
    **_ignored,
):
    """Synthetic examples generated on the spot (seeded: the same knobs give the same data)."""
    import datasets

    sizes = [_size(v, f"abo_n_{s}", d) for v, s, d in zip((abo_n_train, abo_n_dev, abo_n_test), SPLITS, DEFAULT_SIZES)]
    difficulty = _size(abo_difficulty, "abo_difficulty", 1)
    try:
        splits = _synthetic_splits(kind, tuple(sizes), int(abo_seed), difficulty)
    except ValueError as e:
        raise AboError(str(e)) from None
    return datasets.DatasetDict(splits)  # a new dict over the shared splits (a Dataset is never changed in place)


@lru_cache(maxsize=32)
def _synthetic_splits(kind: str, sizes: tuple[int, ...], seed: int, difficulty: int):
    """Generated once per process: the optimizer builds its task again for every scoring pass, and
    generating and hashing the rows cost more than the rest of that build."""
    return _dataset_dict({split: generate_split(kind, split, size, seed, difficulty) for split, size in zip(SPLITS, sizes)})


def _with_ids(rows: list[dict]) -> list[dict]:
    return [{"id": example_id(r["input"]), "input": r["input"], "target": r["target"]} for r in rows]


def partition(
    pool: list[dict], official_test: list[dict] | None, seed, n_train, n_dev, n_test
) -> dict[str, list[dict]]:
    """Seeded train/dev/test partition of public data; an official test split always stays test."""
    n_train = _size(n_train, "abo_n_train", DEFAULT_SIZES[0])
    n_dev = _size(n_dev, "abo_n_dev", DEFAULT_SIZES[1])
    n_test = _size(n_test, "abo_n_test", None)
    pool = list(pool)
    random.Random(f"partition:{seed}").shuffle(pool)
    test = official_test if official_test is not None else pool[n_train + n_dev :]
    if len(pool) < n_train + n_dev + (0 if official_test is not None else 1):
        raise AboError(
            f"the data has {len(pool)} examples to split, fewer than abo_n_train + abo_n_dev = {n_train + n_dev}"
        )
    return {"train": pool[:n_train], "dev": pool[n_train : n_train + n_dev], "test": test[:n_test]}


def _hub_or_local(hub: str, local_hint: str, read_local, read_hub, abo_data_dir):
    """Rows from a local copy when abo_data_dir is given, else from the Hugging Face Hub."""
    if abo_data_dir:
        try:
            return read_local(Path(abo_data_dir))
        except AboError as e:  # names the file and the problem
            raise AboError(f"cannot read the local copy of {hub}: {e}") from None
        except (OSError, ValueError, KeyError) as e:
            raise AboError(f"cannot read the local copy of {hub} in {abo_data_dir}: {e}") from None
    try:
        return read_hub()
    except Exception as e:  # offline, missing, renamed: all end in the same advice
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise AboError(
            f"cannot load dataset {hub} from the Hugging Face Hub ({reason}); "
            f"to use a local copy, pass --metadata '{{\"abo_data_dir\": \"{local_hint}\"}}'"
        ) from None


def _examples(path: Path) -> list:
    """The `examples` list of a BIG-bench-style JSON file (read errors name the file)."""
    data = read_json(path)
    if not isinstance(data, dict) or not isinstance(data.get("examples"), list):
        raise AboError(f"{path}: expected a JSON object with an 'examples' list")
    return data["examples"]


def _load_hub(path: str, name: str):
    import datasets

    return datasets.load_dataset(path, name)


def bbh(subset: str, abo_data_dir=None, abo_seed=DEFAULT_SEED, abo_n_train=None, abo_n_dev=None, abo_n_test=None, **_ignored):
    """A BIG-Bench-Hard task (one split upstream, partitioned here). Local copy: `<dir>/<subset>.json`."""

    def read_local(d: Path):
        return _examples(d / f"{subset}.json")

    def read_hub():
        return list(_load_hub("SaylorTwift/bbh", subset)["test"])

    rows = _hub_or_local(
        f"SaylorTwift/bbh ({subset})", "/path/to/BIG-Bench-Hard/bbh", read_local, read_hub, abo_data_dir
    )
    return _dataset_dict(partition(_with_ids(rows), None, abo_seed, abo_n_train, abo_n_dev, abo_n_test))


def _lettered(question: str, options: list[str], gold: str) -> dict:
    """A multiple-choice example in BIG-Bench-Hard's layout: options (A), (B), ...; target "(X)"."""
    letters = [chr(ord("A") + i) for i in range(len(options))]
    listed = "\n".join(f"({letter}) {option}" for letter, option in zip(letters, options))
    return {"input": f"{question.strip()}\nOptions:\n{listed}", "target": f"({letters[options.index(gold)]})"}


def bigbench(subset: str, abo_data_dir=None, abo_seed=DEFAULT_SEED, abo_n_train=None, abo_n_dev=None, abo_n_test=None, **_ignored):
    """A BIG-bench multiple-choice task; the official validation split is the test split.

    Local copy: BIG-bench's `benchmark_tasks` directory (`<dir>/<subset>/task.json`), all examples pooled."""

    def read_local(d: Path):
        examples = _examples(d / subset / "task.json")
        pool = []
        for ex in examples:
            options = list(ex["target_scores"])
            gold = max(options, key=lambda o: ex["target_scores"][o])
            pool.append(_lettered(ex["input"], options, gold))
        return pool, None

    def read_hub():
        ds = _load_hub("hails/bigbench", f"{subset}_zero_shot")

        def rows(split):
            return [_lettered(r["inputs"], r["multiple_choice_targets"], r["targets"][0]) for r in ds[split]]

        return rows("train"), rows("validation")

    pool, test = _hub_or_local(
        f"hails/bigbench ({subset}_zero_shot)", "/path/to/BIG-bench/bigbench/benchmark_tasks", read_local, read_hub, abo_data_dir
    )
    split = partition(_with_ids(pool), _with_ids(test) if test is not None else None, abo_seed, abo_n_train, abo_n_dev, abo_n_test)
    return _dataset_dict(split)


def _gsm8k_row(question: str, answer: str) -> dict:
    return {"input": question, "target": answer.split("####")[-1].strip().replace(",", "")}


def gsm8k(abo_data_dir=None, abo_seed=DEFAULT_SEED, abo_n_train=None, abo_n_dev=None, abo_n_test=None, **_ignored):
    """GSM8K; train/dev come from the official train split, test is the official test split.

    Local copy: the `grade_school_math/data` directory (`train.jsonl`, `test.jsonl`)."""

    def read_local(d: Path):
        def rows(name):
            lines = read_text(d / f"{name}.jsonl").splitlines()
            return [_gsm8k_row(**json.loads(line)) for line in lines if line.strip()]

        return rows("train"), rows("test")

    def read_hub():
        ds = _load_hub("openai/gsm8k", "main")
        return [[_gsm8k_row(r["question"], r["answer"]) for r in ds[s]] for s in ("train", "test")]

    train, test = _hub_or_local(
        "openai/gsm8k (main)", "/path/to/grade-school-math/grade_school_math/data", read_local, read_hub, abo_data_dir
    )
    return _dataset_dict(partition(_with_ids(train), _with_ids(test), abo_seed, abo_n_train, abo_n_dev, abo_n_test))
