"""Prompt artifacts: the YAML file an optimize run writes and `--metadata abo_prompt=...` reads.

An artifact holds the prompt with everything needed to trust it: task, method, target and optimizer
models, scores per split, the examples each split used, the round trace, call/token/cost counts,
meta-prompt template hashes, versions and creation time. It is schema-checked on load and written
atomically.
"""

from __future__ import annotations

import hashlib
import platform
from dataclasses import dataclass, field, fields
from datetime import datetime, timezone
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import get_type_hints

from lm_eval_abo.artifact.prompt import Prompt
from lm_eval_abo.infra.errors import AboError
from lm_eval_abo.infra.files import dump_yaml, read_yaml, write_yaml

SCHEMA_VERSION = 2
# Version 1 named the task `task`; lm-eval's task index reads a YAML with a top-level `task` as a task
# config, so an artifact in an --include_path directory would stand in for that task.
TASK_KEY = {1: "task", 2: "lm_eval_task"}


def versions() -> dict[str, str]:
    found = {"python": platform.python_version()}
    for dist in ("lm-eval-abo", "lm-eval", "litellm", "llama-cpp-python", "gepa"):
        try:
            found[dist] = importlib_metadata.version(dist)
        except importlib_metadata.PackageNotFoundError:
            pass
    return found


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


@dataclass
class Artifact:
    task: str
    method: str
    prompt: Prompt
    target: dict = field(default_factory=dict)  # {"model": backend, "model_args": ...}, secrets removed
    optimizer: dict = field(default_factory=dict)  # {"model": litellm string, "args": {...}}
    scores: dict = field(default_factory=dict)  # split -> {"metric", "value", "stderr", "n"}
    splits: dict = field(default_factory=dict)  # split -> example ids used
    carved: dict = field(default_factory=dict)  # split -> the task split it was carved from, for those the task lacks
    trace: list = field(default_factory=list)  # one entry per round
    usage: dict = field(default_factory=dict)  # optimizer calls, tokens, cost; target calls; seconds
    templates: dict = field(default_factory=dict)  # meta-prompt name -> sha256
    settings: dict = field(default_factory=dict)  # how the run was configured (rounds, beam, seed, ...)
    export: dict = field(default_factory=dict)  # the plain lm-eval task written beside the artifact
    versions: dict = field(default_factory=versions)
    created: str = field(default_factory=_now)
    schema_version: int = SCHEMA_VERSION

    def to_dict(self) -> dict:
        data = {TASK_KEY[SCHEMA_VERSION] if f.name == "task" else f.name: getattr(self, f.name) for f in fields(self)}
        data["prompt"] = self.prompt.to_dict()
        data["prompt_sha256"] = self.prompt.sha256()
        return {"schema_version": data.pop("schema_version"), **data}

    @classmethod
    def from_dict(cls, data, source: str) -> Artifact:
        if not isinstance(data, dict):
            raise AboError(f"{source}: an artifact must be a YAML mapping")
        version = data.get("schema_version")
        if version not in TASK_KEY:
            raise AboError(f"{source}: schema_version must be one of {', '.join(map(str, TASK_KEY))}, got {version!r}")
        stray = (set(TASK_KEY.values()) - {TASK_KEY[version]}) & data.keys()
        if stray:
            raise AboError(f"{source}: unknown field '{stray.pop()}'")
        data = {"task" if k == TASK_KEY[version] else k: v for k, v in data.items()}
        data["schema_version"] = SCHEMA_VERSION
        for name, key in (("task", TASK_KEY[version]), ("method", "method")):
            if not isinstance(data.get(name), str) or not data[name]:
                raise AboError(f"{source}: missing or empty field '{key}'")
        if "prompt" not in data:
            raise AboError(f"{source}: missing field 'prompt'")
        prompt = Prompt.from_dict(data["prompt"], where=f"{source}: prompt")
        types = get_type_hints(cls)
        kwargs = {}
        for name, value in data.items():
            if name in ("prompt", "prompt_sha256"):
                continue
            if name not in types:
                raise AboError(f"{source}: unknown field '{name}'")
            if not isinstance(value, types[name]):
                raise AboError(f"{source}: field '{name}' must be a {types[name].__name__}")
            kwargs[name] = value
        recorded = data.get("prompt_sha256")
        if recorded is not None and recorded != prompt.sha256():
            raise AboError(f"{source}: prompt_sha256 does not match the prompt (edited by hand? delete the field)")
        return cls(prompt=prompt, **kwargs)


def load(path: str | Path, task: str | None = None) -> Artifact:
    """Read and check an artifact; with `task`, also check that it was made for that task."""
    artifact = Artifact.from_dict(read_yaml(path), source=str(path))
    if task is not None and artifact.task != task:
        raise AboError(f"{path}: artifact is for task '{artifact.task}', not '{task}'")
    return artifact


def text(artifact: Artifact) -> str:
    """The artifact as its YAML file holds it."""
    return dump_yaml(artifact.to_dict())


def save(artifact: Artifact, path: str | Path) -> Path:
    return write_yaml(path, artifact.to_dict())


def file_sha256(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()

