"""The Node.js worker that runs promptfoo `javascript` assertions: one long-lived process per run (started
at the first such assertion, stopped when Python exits), asked one assertion at a time over its stdin
and stdout (`node_worker.mjs` holds the protocol). Where Node is absent, those assertions are refused in
one line; nothing else needs Node.
"""

from __future__ import annotations

import atexit
import json
import secrets
import shutil
import subprocess
import threading
from pathlib import Path

from lm_eval_abo.infra.errors import AboError
from lm_eval_abo.promptfoo.checks import GradingError

WORKER = Path(__file__).with_name("node_worker.mjs")
NO_NODE = "runs JavaScript, and Node.js (`node`) is not on PATH: install Node.js 18 or newer"


def node_binary() -> str | None:
    return shutil.which("node")


class NodeWorker:
    """One `node node_worker.mjs` process; `ask` is safe from several threads (one request at a time)."""

    def __init__(self):
        self._process: subprocess.Popen | None = None
        self._token = ""
        self._lock = threading.Lock()
        self._next_id = 0

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process and self._process.poll() is None else None

    def _start(self) -> subprocess.Popen:
        node = node_binary()
        if node is None:
            raise AboError(f"a javascript assertion {NO_NODE}")
        self._token = "abo-" + secrets.token_hex(8)
        self._process = subprocess.Popen([node, str(WORKER), self._token], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                         stderr=subprocess.DEVNULL, text=True, encoding="utf-8", bufsize=1)
        return self._process

    def ask(self, request: dict) -> dict:
        """The worker's reply ({"pass", "score"} or {"error"}) to one assertion request."""
        with self._lock:
            process = self._process if self._process and self._process.poll() is None else self._start()
            self._next_id += 1
            line = json.dumps({**request, "id": self._next_id}, ensure_ascii=False)
            try:
                process.stdin.write(line + "\n")
                process.stdin.flush()
                while True:
                    reply = process.stdout.readline()
                    if not reply:
                        raise BrokenPipeError
                    if reply.startswith(self._token + " "):
                        break  # other lines: something the assertion's code printed to stdout itself
            except (BrokenPipeError, OSError):
                self.stop()
                raise AboError("the Node.js worker for javascript assertions stopped (exit "
                               f"{process.poll()}); a javascript assertion ended it or Node cannot run it") from None
            found = json.loads(reply[len(self._token) + 1:])
            if found.get("id") != self._next_id:
                self.stop()
                raise AboError("the Node.js worker for javascript assertions answered out of order")
            return found

    def stop(self) -> None:
        """End the worker this object started (by its own handle), if it runs."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        try:
            process.stdin.close()
            process.wait(timeout=5)
        except (OSError, subprocess.TimeoutExpired):
            process.kill()
            process.wait()


_WORKER = NodeWorker()
atexit.register(_WORKER.stop)


def run_javascript(request: dict) -> tuple[bool, float]:
    """(pass, score) of one javascript assertion by the run's worker; GradingError where promptfoo errs."""
    found = _WORKER.ask(request)
    if "error" in found:
        raise GradingError(found["error"])
    return bool(found["pass"]), float(found["score"])


def worker() -> NodeWorker:
    return _WORKER
