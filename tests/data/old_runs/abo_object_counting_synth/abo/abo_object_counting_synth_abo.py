"""Documents of the lm-eval task beside this file: its test documents (and few-shot documents) as lm-eval
saw them in the run that wrote it. lm-eval calls `load` as the task's custom_dataset."""

import json
from pathlib import Path

import datasets

FOLDER = Path(__file__).with_suffix("")


def load(**_):
    features = json.loads((FOLDER / "features.json").read_text(encoding="utf-8"))
    splits = {}
    for split, spec in features.items():
        lines = (FOLDER / f"{split}.jsonl").read_text(encoding="utf-8").splitlines()
        rows = [json.loads(line) for line in lines if line]
        splits[split] = datasets.Dataset.from_list(rows, features=datasets.Features.from_dict(spec))
    return datasets.DatasetDict(splits)
