"""The optimized prompt as a plain lm-eval task that the stock `lm_eval` runs where only lm-eval is installed.

A run writes, beside best.yaml:
  <name>.yaml   the task's own config with the prompt in lm-eval's fields (description, few-shot samples,
                gen_prefix) and the run's generation settings, reading its documents from the files below
  <name>.py     the loader those documents need (`custom_dataset`): a few lines of plain Python
  <name>/       the held-out test documents, as lm-eval saw them, and the few-shot documents the task
                draws from a split, if any (JSON Lines, with their `datasets` features)
and any module file of the user's task that a `!function` names. So
`lm_eval --include_path <run dir> --tasks <name>` evaluates exactly the run's test documents with the
optimized prompt. Before it is kept, the export is checked: the requests lm-eval builds from it must
equal, document for document, those it builds from the task with the prompt.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

from lm_eval_abo.infra.errors import AboError
from lm_eval_abo.infra.files import write_text_atomic
from lm_eval_abo.tasks import fields
from lm_eval_abo.tasks.built import physical_docs, quiet_lm_eval, requests
from lm_eval_abo.tasks.configs import FunctionRef, dump_task_yaml, portable

NAME = re.compile(r"[A-Za-z0-9_\-]+")
FEWSHOT_SPLIT = "fewshot"
LOADER = '''"""Documents of the lm-eval task beside this file: its test documents (and few-shot documents) as lm-eval
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
'''


def default_name(task: str) -> str:
    return re.sub(r"[^A-Za-z0-9_\-]", "_", task) + "_abo"


def _snapshot(folder: Path, splits: dict[str, object]) -> None:
    """Write each split's documents (a `datasets.Dataset`) as JSON Lines, with the features to read them back."""
    folder.mkdir(parents=True, exist_ok=True)
    features = {}
    for split, docs in splits.items():
        features[split] = docs.features.to_dict()
        lines = (json.dumps(doc, ensure_ascii=False, default=str) + "\n" for doc in docs)
        write_text_atomic(folder / f"{split}.jsonl", "".join(lines))
    write_text_atomic(folder / "features.json", json.dumps(features, indent=1) + "\n")


def _header(name: str, provenance: dict, needs_plugin: bool) -> str:
    lines = [
        f"# {name}: lm-eval task {provenance.get('task')!r} with the prompt optimized by {provenance.get('method')} "
        f"(lm-eval-abo), on the run's {provenance.get('test_docs')} held-out test documents.",
        f"# Run: lm_eval --include_path <this directory> --tasks {name} --model ... "
        "(with the run's --apply_chat_template / --system_instruction, if it had them)",
    ]
    if needs_plugin:
        lines.append("# The task's own YAML names lm-eval-abo code (a promptfoo grader), so this task needs lm-eval-abo installed.")
    return "\n".join(lines) + "\n"


def write(bridge, prompt, out_dir: Path, name: str, provenance: dict) -> Path:
    """Write the plain task `name` for `prompt` into `out_dir` (`bridge`: the run's task, splits and
    settings, `scoring.Bridge`); returns the YAML's path."""
    if not NAME.fullmatch(name):
        raise AboError(f"export name {name!r}: use letters, digits, '_' and '-'")
    test, harness, built = bridge.splits.test, bridge.harness, bridge.reference  # the prompt changes no document
    config = fields.task_config(bridge.base_config, prompt, name, test.split)
    snapshot = {test.split: physical_docs(built, test.split).select(list(test.indices))}
    shots = config.get("fewshot_config") or {}
    if (config.get("num_fewshot") or 0) > 0 and callable(shots.get("samples")):
        config["fewshot_config"] = {**shots, "samples": list(shots["samples"]())}
    elif (config.get("num_fewshot") or 0) > 0 and not isinstance(shots.get("samples"), list):
        source = built.fewshot_cfg.split or built.config.training_split or built.config.validation_split
        if source == test.split:
            raise AboError(f"task {bridge.task!r} draws its few-shot examples from its test split, which a "
                           "task of the held-out documents alone cannot reproduce")
        snapshot[FEWSHOT_SPLIT] = built.fewshot_docs()
        config["fewshot_config"] = {**shots, "split": FEWSHOT_SPLIT, "samples": None, "process_docs": None}
    if built.OUTPUT_TYPE == "generate_until" and harness.gen_kwargs:
        config["generation_kwargs"] = {**(config.get("generation_kwargs") or {}), **harness.gen_kwargs}
    metadata = {k: v for k, v in (config.get("metadata") or {}).items() if not str(k).startswith("abo_")}
    config.update(custom_dataset=FunctionRef(f"{name}.load"), process_docs=None, training_split=None,
                  validation_split=None, fewshot_split=None, metadata={**metadata, "abo": provenance})
    for key in ("tag", "group", "task_alias"):
        config.pop(key, None)
    out_dir.mkdir(parents=True, exist_ok=True)
    _snapshot(out_dir / name, snapshot)
    write_text_atomic(out_dir / f"{name}.py", LOADER)
    config = portable({"task": name, **{k: v for k, v in config.items() if k != "task"}}, out_dir)
    needs_plugin = "lm_eval_abo" in json.dumps(config, default=str)
    return write_text_atomic(out_dir / f"{name}.yaml", _header(name, provenance, needs_plugin) + dump_task_yaml(config))


def verify(bridge, prompt, out_dir: Path, name: str) -> int:
    """Check that lm-eval builds from the exported task exactly the requests it builds from the task with
    the prompt on the test documents; returns the number of documents compared."""
    from lm_eval.tasks import TaskManager

    test, task = bridge.splits.test, bridge.task
    with quiet_lm_eval():
        original = bridge.manager.load([fields.task_config(bridge.base_config, prompt, task, test.split)])["tasks"][task]
        exported = TaskManager(include_path=str(out_dir), include_defaults=False).load([name])["tasks"][name]
    expected = requests(original, bridge.harness, list(test.indices))
    got = requests(exported, bridge.harness)
    if len(got) != len(expected):
        raise AboError(f"the exported task {name} has {len(got)} documents, the run's test split {len(expected)}")
    for i, (a, b) in enumerate(zip(expected, got)):
        if a != b:
            raise AboError(f"the exported task {name} builds another request than the run for test document {i}")
    return len(got)


def remove(out_dir: Path, name: str) -> None:
    """Delete an export that failed its check (module copies of the user's task stay: they are harmless)."""
    for path in (out_dir / f"{name}.yaml", out_dir / f"{name}.py"):
        path.unlink(missing_ok=True)
    shutil.rmtree(out_dir / name, ignore_errors=True)
