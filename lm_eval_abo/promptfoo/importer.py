"""`lm-eval-abo import promptfoo`: a promptfoo config becomes an abo task that `optimize` and `lm_eval` run.

The tests become the data (a seeded train/dev/test partition), their assertions the metric
(`hooks.process_results`, promptfoo's pass rate), the first prompt the task's question template
and initial prompt: the leading paragraphs without placeholders become the instruction the optimizers
rewrite, the rest the fixed question template (its `{{ name }}` placeholders, or, for a prompt with other
Nunjucks syntax, the question rendered per test in the sandbox as the field `promptfoo_prompt`). The
first provider's settings (or promptfoo's defaults) become the generation settings, and its lm-eval
equivalent is suggested. Reading the config is `reading`'s.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timezone
from pathlib import Path

import yaml

from lm_eval_abo.infra.errors import AboError
from lm_eval_abo.infra.files import write_text_atomic
from lm_eval_abo.promptfoo import assertions, syntax
from lm_eval_abo.promptfoo.reading import Imported, read_config, split_prompt  # noqa: F401 (re-exported)
from lm_eval_abo.tasks import tasks_dir
from lm_eval_abo.tasks.configs import FunctionRef, dump_task_yaml


class _TaskLoader(yaml.SafeLoader):
    """Reads the package's own task template, whose `class:` is a `!function` reference."""


_TaskLoader.add_constructor("!function", lambda loader, node: FunctionRef(loader.construct_scalar(node)))


def task_config(imp: Imported, name: str, data_dir: Path, data_file: str, n_train: int, n_dev: int) -> dict:
    template = _read_template()
    placement = "system" if imp.system else "user"
    question_template = syntax.jinja_template(syntax.template_parts(imp.doc_to_text, "prompt"))
    sha = hashlib.sha256(imp.config.read_bytes()).hexdigest()
    return {
        "task": name,
        "tag": ["abo_promptfoo"],  # its own tag: lm-eval lets a tag from a later include path replace the bundled `abo`
        **template,
        "custom_dataset": FunctionRef("lm_eval_abo.promptfoo.assertions.load_tests"),
        "dataset_kwargs": {"data_file": data_file, "data_dir": str(data_dir.resolve()), "n_train": n_train, "n_dev": n_dev},
        "doc_to_text": question_template,
        "generation_kwargs": imp.generation,
        "process_results": FunctionRef("lm_eval_abo.promptfoo.hooks.process_results"),
        "metric_list": [{"metric": assertions.METRIC, "aggregation": "mean", "higher_is_better": True}],
        "metadata": {
            "version": 1.0,
            "abo_default_prompt": {"instruction": imp.instruction, "placement": placement},
            "promptfoo": {"config": str(imp.config.resolve()), "sha256": sha, "provider": imp.provider.get("id"),
                          "prompt": imp.prompt_label[:200], "lm_eval": imp.lm_eval or None},
        },
    }


def _read_template() -> dict:
    """The shared abo task template (the package's own file, so a full YAML loader is not needed)."""
    return yaml.load((tasks_dir() / "_default_template_yaml").read_text(encoding="utf-8"), Loader=_TaskLoader)  # noqa: S506


def import_config(config: str | Path, out_dir: str | Path, task_name: str | None = None,
                  n_train: int | None = None, n_dev: int | None = None) -> tuple[Path, Imported]:
    """Write `<out_dir>/<task>.yaml` and its tests; returns the YAML path and what was imported."""
    imp = read_config(config)
    name = task_name or "abo_pf_" + "".join(c if c.isalnum() else "_" for c in Path(config).stem.lower())
    if not syntax.NAME.fullmatch(name):
        raise AboError(f"--task-name {name!r}: use letters, digits and underscores")
    n = len(imp.rows)
    n_train = n_train or max(1, n * 2 // 5)
    n_dev = n_dev or max(1, n // 5)
    if n_train + n_dev >= n:
        raise AboError(f"{n} tests cannot give {n_train} train and {n_dev} dev examples and leave any for test")
    out = Path(out_dir)
    data_file = f"{name}.jsonl"
    write_text_atomic(out / data_file, "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in imp.rows))
    header = (f"# Imported from the promptfoo config {Path(config).resolve()} by `lm-eval-abo import promptfoo` "
              f"on {datetime.now(timezone.utc):%Y-%m-%d}.\n# Tests: {data_file} (metric: promptfoo's pass rate over the "
              f"assertions). Run with --include_path {out.resolve()}\n")
    body = dump_task_yaml(task_config(imp, name, out, data_file, n_train, n_dev))
    path = write_text_atomic(out / f"{name}.yaml", header + body)
    return path, imp
