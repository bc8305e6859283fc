"""The prompts of a promptfoo config: every form promptfoo reads (inline text, `{raw|id, label, config}`,
a map `{file://x: label}`, `file://` files and globs, several prompts in a `.txt` file separated by
lines `---`), with the labels promptfoo gives them, and the one the import starts from: the first that
the first provider's `prompts:` filter allows."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from lm_eval_abo.infra.errors import AboError
from lm_eval_abo.infra.files import read_text
from lm_eval_abo.promptfoo import files

TEXT_SUFFIXES = (".txt", ".md", ".j2", ".json")


@dataclass
class Prompt:
    raw: str
    label: str
    ref: str = ""  # the file:// reference it came from
    config: dict = field(default_factory=dict)  # prompt-level provider settings


def _from_file(base: Path, ref: str, label: str | None, config: dict, problems: list[str]) -> list[Prompt]:
    found = []
    for path in files.resolve(base, ref, "prompts"):
        suffix = path.suffix.lower()
        # promptfoo labels a prompt "<file>: <text>", the file as written, or its absolute path when globbed
        name = str(path) if files.is_glob(ref) else path.relative_to(base).as_posix()
        if suffix not in TEXT_SUFFIXES:
            problems.append(f"prompt file {name} (read: {', '.join(TEXT_SUFFIXES)}; prompt functions and other formats are not)")
            continue
        text = read_text(path)
        if suffix == ".json":
            pieces = [text]
        else:  # as promptfoo reads text files: prompts separated by lines "---", each trimmed
            pieces = [p.strip() for p in re.split(r"^---$", "\n".join(text.splitlines()), flags=re.MULTILINE)]
            pieces = [p for p in pieces if p]
        for piece in pieces:
            found.append(Prompt(piece, label or f"{name}: {piece}", files.relative_ref(base, path), config))
    return found


def read_prompts(given, base: Path, problems: list[str]) -> list[Prompt]:
    """Every prompt of the config, in promptfoo's order (a glob's files in name order)."""
    if isinstance(given, dict) and not ("raw" in given or "id" in given):
        entries = [{"id": ref, "label": label} for ref, label in given.items()]
    elif isinstance(given, list):
        entries = given
    else:
        entries = [given] if given else []
    found: list[Prompt] = []
    for i, entry in enumerate(entries):
        config, label = {}, None
        if isinstance(entry, dict):
            config, label = entry.get("config") or {}, entry.get("label")
            entry = entry.get("raw", entry.get("id"))
        if not isinstance(entry, str):
            problems.append(f"prompt {i + 1} is neither text nor a file:// reference")
            continue
        if entry.startswith("file://"):
            try:
                found.extend(_from_file(base, entry, label, config, problems))
            except AboError as e:
                problems.append(str(e))
        elif re.match(r"(exec|langfuse|portkey|helicone|package):", entry):
            problems.append(f"prompt {i + 1} comes from {entry.split(':')[0]} (not read)")
        else:
            found.append(Prompt(entry, label or entry, "", config))
    if not found and not problems:
        problems.append("no prompts")
    return found


def allowed(prompt: Prompt, filters) -> bool:
    """Whether a `prompts:` filter (of a provider or a test) admits the prompt: its label or file, exactly,
    as a group (`group` admits `group:...`) or with a trailing `*`."""
    if not isinstance(filters, list):
        return True
    names = {prompt.label, prompt.ref, prompt.ref.removeprefix("file://")} - {""}
    for f in map(str, filters):
        if f in names or any(n.startswith(f + ":") for n in names) or f.endswith("*") and any(n.startswith(f[:-1]) for n in names):
            return True
    return False


def chat_messages(text: str, problems: list[str]) -> tuple[str, str] | None:
    """(system, user) of a chat prompt (a JSON list of messages), or None if the prompt is text."""
    stripped = text.strip()
    if not (stripped.startswith("[") and stripped.endswith("]")):
        return None
    try:
        messages = json.loads(text)
    except ValueError:
        problems.append("a chat prompt that is not plain JSON (e.g. with {{ var | dump }})")
        return "", ""
    roles = [m.get("role") if isinstance(m, dict) else None for m in messages]
    if roles not in (["user"], ["system", "user"]) or not all(isinstance(m.get("content"), str) for m in messages):
        problems.append("a chat prompt other than [system,] user with text content")
        return "", ""
    return (messages[0]["content"] if len(messages) == 2 else ""), messages[-1]["content"]
