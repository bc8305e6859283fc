"""Finding the task to optimize: any single task lm-eval can load, by name.

The plugin's own tasks and the user's `--include_path` directories are indexed first (milliseconds); lm-eval's
own index of built-in tasks (about 20 s on 2 cores) is built only when the name is not found there. A group
or a tag is not one task: the error lists its tasks and asks for one.
"""

from __future__ import annotations

import difflib
import sys
from pathlib import Path

from lm_eval_abo.infra.errors import AboError
from lm_eval_abo.infra.files import bundled_dir, yaml_problem

SHOWN_MEMBERS = 8


def tasks_dir() -> Path:
    """The directory to give lm-eval as --include_path (it ships inside the wheel)."""
    return bundled_dir("task_configs")


def task_paths(include_path: list[str]) -> list[str]:
    """The plugin's task directory, then the user's (each checked to exist)."""
    for path in include_path:
        if not Path(path).is_dir():
            raise AboError(f"--include_path {path}: no such directory")
    return [str(tasks_dir()), *include_path]


def task_manager(name: str, include_path: list[str], metadata: dict):
    """An lm-eval TaskManager that knows `name` as a single task."""
    from lm_eval.tasks import TaskManager

    paths = task_paths(include_path)
    manager = TaskManager(include_path=paths, include_defaults=False, metadata=metadata)
    if name not in manager.task_index:
        unreadable(name, include_path)
        if sys.stderr.isatty():  # it takes a while; a pipe or a log gets the result only
            print(f"{name}: searching lm-eval's own tasks ...", file=sys.stderr)
        manager = TaskManager(include_path=paths, include_defaults=True, metadata=metadata)
    check_single_task(manager, name)
    return manager


def unreadable(name: str, include_path: list[str]) -> None:
    """lm-eval's index skips a task YAML it cannot read without a word: one under the user's paths that
    names `name` and cannot be read is the error."""
    from lm_eval.tasks._yaml_loader import load_yaml

    for folder in include_path:
        for path in sorted(Path(folder).rglob("*.yaml")):
            try:
                if name not in path.read_text(encoding="utf-8", errors="replace"):
                    continue
                load_yaml(path, resolve_func=False, recursive=True)
            except Exception as e:  # what lm-eval's index skips: YAML errors, missing includes, unreadable files
                raise AboError(f"task {name!r}: lm-eval cannot read {path} ({yaml_problem(e)}); fix that file") from None


def _members(entry) -> list[str]:
    """The tasks (and subgroups) a group or tag names."""
    from lm_eval.tasks._index import Kind

    if entry.kind is Kind.TAG:
        return sorted(entry.tags)
    listed = (entry.cfg or {}).get("task") or []
    return [m if isinstance(m, str) else str(m.get("task") or m.get("group")) for m in listed]


def check_single_task(manager, name: str) -> None:
    from lm_eval.tasks._index import Kind

    entry = manager.task_index.get(name)
    if entry is None:
        close = difflib.get_close_matches(name, manager.all_subtasks, n=3, cutoff=0.75)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise AboError(f"unknown task {name!r}: not among lm-eval's tasks (`lm-eval ls tasks`), this plugin's "
                       f"(`lm-eval-abo tasks`) or under --include_path{hint}")
    if entry.kind in (Kind.GROUP, Kind.TAG):
        members = _members(entry)
        shown = ", ".join(members[:SHOWN_MEMBERS]) + (", ..." if len(members) > SHOWN_MEMBERS else "")
        kind = "group" if entry.kind is Kind.GROUP else "tag"
        raise AboError(f"{name!r} is a {kind} of {len(members)} tasks ({shown}); optimize one task at a time, "
                       f"e.g. --task {members[0] if members else '<task>'}")
