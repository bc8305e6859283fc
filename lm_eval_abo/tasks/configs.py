"""lm-eval task configs as data: read from a task's YAML, written back as YAML that lm-eval loads anywhere.

Functions and classes in a config (`!function` references, resolved by lm-eval into Python objects)
are written back as references that resolve wherever the YAML goes: lm-eval's own task code by its
import path (`lm_eval.tasks.bbh.cot_zeroshot.utils.NumberParseRegexFilter`), an importable package's by
its module path, and a module that lm-eval loaded from a file beside a user's YAML by a copy of that
file beside the new YAML.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import yaml

from lm_eval_abo.infra.errors import AboError
from lm_eval_abo.infra.files import _Dumper


class FunctionRef(str):
    """A `!function` reference in an lm-eval task YAML."""


def dump_task_yaml(data) -> str:
    """YAML for people: long multi-line text as literal blocks, short text (stop sequences, separators)
    quoted, `FunctionRef` values as lm-eval `!function` tags."""

    class Dumper(_Dumper):
        pass

    def text(dumper, value: str):
        if "\n" in value and (len(value) < 40 or not value.strip()):
            return dumper.represent_scalar("tag:yaml.org,2002:str", value, style='"')
        return _Dumper.yaml_representers[str](dumper, value)

    Dumper.add_representer(str, text)
    Dumper.add_representer(FunctionRef, lambda dumper, ref: dumper.represent_scalar("!function", str(ref)))
    return yaml.dump(data, Dumper=Dumper, sort_keys=False, allow_unicode=True, width=100)


def load_config(yaml_path: str | Path) -> dict:
    """A task's full config as lm-eval builds it: `include:`s merged, `!function` references imported."""
    from lm_eval.tasks._yaml_loader import load_yaml

    try:
        return load_yaml(yaml_path, resolve_func=True)
    except (ImportError, AttributeError) as e:  # a `!function` that does not import
        raise AboError(f"{yaml_path}: {str(e).strip().splitlines()[0]}; fix the `!function` reference or install "
                       "what it imports") from None


def _reference(obj, out_dir: Path, copied: dict[Path, str]) -> FunctionRef:
    """`obj` (a function or class from a task config) as a reference lm-eval resolves from `out_dir`."""
    name = getattr(obj, "__qualname__", "")
    module = sys.modules.get(getattr(obj, "__module__", "") or "")
    if not name or "<" in name or module is None:  # a lambda or a nested function has no importable name
        raise AboError(f"{obj!r} in the task config cannot be written as a `!function` reference")
    source = getattr(module, "__file__", None)
    if source is None or module.__name__ != str(Path(source).with_suffix("")):
        return FunctionRef(f"{module.__name__}.{name}")  # an importable module (lm-eval's task code included)
    # lm-eval loaded the module from a file beside a task YAML, naming it by its path: copy it beside the new YAML
    source = Path(source)
    if source not in copied:
        taken = set(copied.values())
        stem = next(s for s in (source.stem, *(f"{source.stem}_{i}" for i in range(2, 1000))) if s not in taken)
        shutil.copyfile(source, out_dir / f"{stem}.py")
        copied[source] = stem
    return FunctionRef(f"{copied[source]}.{name}")


def portable(config, out_dir: Path, copied: dict[Path, str] | None = None):
    """`config` with every function and class replaced by a `FunctionRef` that resolves from `out_dir`
    (copying the module files it needs there)."""
    copied = {} if copied is None else copied
    if isinstance(config, dict):
        return {k: portable(v, out_dir, copied) for k, v in config.items()}
    if isinstance(config, (list, tuple)):
        return [portable(v, out_dir, copied) for v in config]
    if callable(config):
        return _reference(config, out_dir, copied)
    return config
