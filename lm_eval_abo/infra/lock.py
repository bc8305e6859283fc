"""One writer per output folder: an exclusive lock on `<folder>/.lock`, held while a run writes there.

The lock is `flock`: the kernel releases it when its process ends, however it ends (a SIGKILL
included), so a lock is never stale. The file holds who has it (process, host, start time) for the
message a second run gets, and is emptied when the holder lets go: a file that still names a holder
nobody holds is what a killed process or a power loss left, and the next run takes it over.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from pathlib import Path

from lm_eval_abo.infra.errors import AboError

LOCK_NAME = ".lock"


class FolderInUse(AboError):
    """Another process holds the folder's lock."""


class FolderLock:
    """`with FolderLock(folder, what, out):` holds the folder's lock for the block. The folder is made
    if missing, and removed again if the block wrote nothing into it."""

    def __init__(self, folder: str | Path, what: str = "run", out=print):
        self.folder, self.what, self.out = Path(folder), what, out
        self.path = self.folder / LOCK_NAME
        self._fd: int | None = None
        self._made: list[Path] = []  # folders this lock created, deepest first

    def __enter__(self) -> FolderLock:
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()

    def acquire(self) -> None:
        self._made = [p for p in (self.folder, *self.folder.parents) if not p.exists()]
        try:
            for _ in range(100):  # only a holder that removes its empty folder meanwhile makes it try again
                self.folder.mkdir(parents=True, exist_ok=True)
                try:
                    fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
                except FileNotFoundError:
                    continue
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    holder = _holder(fd)
                    os.close(fd)
                    raise FolderInUse(self._in_use(holder)) from None
                except OSError:
                    os.close(fd)
                    raise
                if _same_file(fd, self.path):
                    self._fd = fd
                    break
                os.close(fd)  # locked a file its holder removed between our open and our lock
        except OSError as e:
            raise AboError(f"cannot write in {self.folder}: {e.strerror or e}; choose another --output") from None
        if self._fd is None:
            raise AboError(f"cannot lock {self.path}: it keeps disappearing")
        left = _holder(self._fd)
        if left:
            self.out(f"{self.folder}: taking over the lock of {_who(left)}, which ended without releasing it")
        me = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        try:
            os.ftruncate(self._fd, 0)
            os.pwrite(self._fd, json.dumps(me).encode(), 0)
        except OSError:
            pass  # a full disk: the lock holds all the same, and the run meets the disk at its first write

    def release(self) -> None:
        if self._fd is None:
            return
        try:
            os.ftruncate(self._fd, 0)  # an empty file: released, nobody to take over from
            if self._made and [p.name for p in self.folder.iterdir()] == [LOCK_NAME]:
                self.path.unlink()  # before unlocking: a run that opened it meanwhile sees it gone
                for folder in self._made:
                    folder.rmdir()
        except OSError:
            pass  # a folder gone read-only or not empty: the next run takes the lock over all the same
        fcntl.flock(self._fd, fcntl.LOCK_UN)
        os.close(self._fd)
        self._fd = None

    def _in_use(self, holder: dict) -> str:
        return (f"{self.folder} is in use by {_who(holder) if holder else 'another process'}: one {self.what} at a "
                "time writes there; wait for it to end, or choose another --output")


def _holder(fd: int) -> dict:
    """Who the lock file names (empty when it names nobody)."""
    try:
        text = os.pread(fd, 4096, 0).decode("utf-8", "replace")
        holder = json.loads(text) if text.strip() else {}
    except (OSError, ValueError):
        return {}
    return holder if isinstance(holder, dict) else {}


def _who(holder: dict) -> str:
    return f"process {holder.get('pid', '?')} on {holder.get('host', '?')} (since {holder.get('since', '?')})"


def _same_file(fd: int, path: Path) -> bool:
    try:
        return os.fstat(fd).st_ino == os.stat(path).st_ino
    except FileNotFoundError:
        return False
