"""Reading YAML safely and writing every output file atomically."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import yaml

from lm_eval_abo.errors import AboError

MAX_YAML_BYTES = 20 * 1024 * 1024


def user_cache_dir() -> Path:
    """Where the package keeps what it builds once per machine: the assembled model files, the optimizer's
    reply cache (`LM_EVAL_ABO_CACHE`, else `$XDG_CACHE_HOME/lm-eval-abo`, else `~/.cache/lm-eval-abo`)."""
    base = os.environ.get("LM_EVAL_ABO_CACHE") or Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "lm-eval-abo"
    return Path(base)


def bundled_dir(name: str) -> Path:
    """A data directory shipped with the package: inside the wheel, or at the top of a source checkout."""
    inside = Path(__file__).parent / name
    return inside if inside.is_dir() else Path(__file__).parent.parent / name


class _NoAliasLoader(yaml.SafeLoader):
    """yaml.SafeLoader that refuses anchors/aliases, which nothing here needs (and alias bombs abuse)."""

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise yaml.composer.ComposerError(None, None, "YAML aliases are not accepted", event.start_mark)
        return super().compose_node(parent, index)


def read_text(path: str | Path, max_bytes: int | None = None) -> str:
    """A UTF-8 text file; every failure is one AboError naming the file."""
    path = Path(path)
    try:
        if max_bytes is not None and path.stat().st_size > max_bytes:
            raise AboError(f"{path}: file is larger than {max_bytes // (1024 * 1024)} MiB")
        return path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise AboError(f"{path}: no such file") from None
    except UnicodeDecodeError as e:
        raise AboError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    except OSError as e:
        raise AboError(f"{path}: cannot read ({e.strerror})") from None


def read_yaml(path: str | Path, max_bytes: int = MAX_YAML_BYTES):
    """Parse a YAML file with the safe loader; every failure is one AboError naming the file."""
    text = read_text(path, max_bytes)
    try:
        return yaml.load(text, Loader=_NoAliasLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as e:
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        mark = getattr(e, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        raise AboError(f"{path}: not valid YAML: {problem}{where}") from None


class _Dumper(yaml.SafeDumper):
    """Multi-line text as literal blocks, so prompts read as they are in the file. Never writes
    anchors/aliases (an object met twice is written twice), since read_yaml refuses them."""

    def ignore_aliases(self, data) -> bool:
        return True


def _str_representer(dumper, text: str):
    style = "|" if "\n" in text else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", text, style=style)


_Dumper.add_representer(str, _str_representer)


def dump_yaml(data) -> str:
    return yaml.dump(data, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=100)


def write_text_atomic(path: str | Path, text: str) -> Path:
    """Write through a temporary file and rename it, so a crash never leaves half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def append_line(path: str | Path, text: str) -> None:
    """Add a line to a log file (made with its folder if missing), flushed at once: a crash loses no line."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as f:
        f.write(text.rstrip("\n") + "\n")
        f.flush()


def write_yaml(path: str | Path, data) -> Path:
    return write_text_atomic(path, dump_yaml(data))


def read_json(path: str | Path):
    text = read_text(path)
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise AboError(f"{path}: not valid JSON ({e.msg} at line {e.lineno}, column {e.colno})") from None


def write_json(path: str | Path, data) -> Path:
    return write_text_atomic(path, json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n")
