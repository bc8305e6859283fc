"""Reading YAML safely and writing every output file atomically."""

from __future__ import annotations

import json
import os
import secrets
import stat
from pathlib import Path

import yaml

from lm_eval_abo.infra.errors import AboError

MAX_YAML_BYTES = 20 * 1024 * 1024


def user_cache_dir() -> Path:
    """Where the package keeps what it builds once per machine: the assembled model files, the optimizer's
    reply cache (`LM_EVAL_ABO_CACHE`, else `$XDG_CACHE_HOME/lm-eval-abo`, else `~/.cache/lm-eval-abo`)."""
    base = os.environ.get("LM_EVAL_ABO_CACHE") or Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "lm-eval-abo"
    return Path(base)


def bundled_dir(name: str) -> Path:
    """A data directory shipped with the package: inside the wheel, or at the top of a source checkout."""
    package = Path(__file__).parent.parent
    inside = package / name
    return inside if inside.is_dir() else package.parent / name


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
        raise AboError(f"{path}: not valid YAML: {yaml_problem(e)}") from None


def yaml_problem(error: Exception) -> str:
    """A YAML error (or any other) in one line, with its line number where it has one."""
    lines = str(error).strip().splitlines()
    problem = getattr(error, "problem", None) or (lines[0] if lines else type(error).__name__)
    mark = getattr(error, "problem_mark", None)
    return f"{problem} (line {mark.line + 1})" if mark is not None else problem


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
    write_texts_atomic({Path(path): text})
    return Path(path)


def write_texts_atomic(texts: dict[Path, str]) -> None:
    """Write several files as one step: every text goes to a temporary file first, and only when all are
    written are they renamed over their files, in order (put the file that marks the step done last). A
    failure to write (a full disk, a read-only folder) leaves every file as it was; it is an OSError naming
    the file it concerns. Each file gets the mode a plain open() gives it: a new one 0o666 less the umask,
    a replaced one its own mode."""
    staged: list[tuple[str, Path]] = []
    try:
        for path, text in texts.items():
            path = Path(path)
            try:
                staged.append((_staged(path, text), path))
            except OSError as e:
                raise OSError(e.errno, e.strerror, str(path)) from e
        for tmp, path in staged:
            os.replace(tmp, path)
        for folder in {path.parent for _, path in staged}:
            _sync_folder(folder)  # the renames themselves survive a power loss
    finally:
        for tmp, _ in staged:
            Path(tmp).unlink(missing_ok=True)


def _staged(path: Path, text: str) -> str:
    """`text` in a new temporary file beside `path`, on disk."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = _create_beside(path)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            if path.exists():
                os.fchmod(f.fileno(), stat.S_IMODE(path.stat().st_mode))
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return tmp


def _create_beside(path: Path) -> tuple[int, str]:
    """A new, uniquely named file beside `path`, created as open() creates files (so the umask and a
    folder's default ACL apply; tempfile.mkstemp would make it 0600 whatever they say)."""
    while True:
        tmp = str(path.parent / f".{path.name}.{secrets.token_hex(4)}.tmp")
        try:
            return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666), tmp
        except FileExistsError:
            continue


def publish(path: Path, make) -> Path:
    """A file that other processes may read or make at the same time (a model assembled into the user's
    cache): `make(tmp)` writes it to a temporary file beside `path`, which then replaces `path` in one
    rename, so nobody sees half of it and a process reading the old file keeps its copy."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = _create_beside(path)
    os.close(fd)
    try:
        make(Path(tmp))
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)
    return path


def append_line(path: str | Path, text: str) -> None:
    """Add a line to a log file (made with its folder if missing), flushed at once: a crash loses no line.
    A failure to write is an OSError naming the file."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a", encoding="utf-8") as f:
            f.write(text.rstrip("\n") + "\n")
            f.flush()
    except OSError as e:
        raise OSError(e.errno, e.strerror, str(path)) from e


def _sync_folder(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # a file system that cannot sync folders
    finally:
        os.close(fd)


def write_yaml(path: str | Path, data) -> Path:
    return write_text_atomic(path, dump_yaml(data))


def read_json(path: str | Path):
    text = read_text(path)
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise AboError(f"{path}: not valid JSON ({e.msg} at line {e.lineno}, column {e.colno})") from None


def dump_json(data) -> str:
    return json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n"


def write_json(path: str | Path, data) -> Path:
    return write_text_atomic(path, dump_json(data))
