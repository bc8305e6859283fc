"""`lm-eval-abo serve`: the embedded models behind OpenAI-compatible servers on 127.0.0.1.

The stock `lm_eval` CLI cannot import a plugin's model class, so it reaches the embedded models over
HTTP (`--model local-completions`). One llama-cpp-python server per model: a server that hosts several
reloads the model whenever the requested one changes.
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from contextlib import contextmanager
from dataclasses import dataclass

from lm_eval_abo.embedded import buffers
from lm_eval_abo.embedded.models import MODELS, N_THREADS, model_path
from lm_eval_abo.infra.errors import AboError

HOST = "127.0.0.1"
READY_TIMEOUT_S = 60


@dataclass
class Server:
    model: str
    port: int
    process: subprocess.Popen
    log: object  # a temporary file: a pipe nobody reads would fill up and stall the server
    extra_buffers: bool  # whether llama.cpp may use its extra buffer types (`buffers`)

    @property
    def base_url(self) -> str:
        return f"http://{HOST}:{self.port}/v1"

    def usage(self) -> str:
        """How to use this server from lm-eval (completion models) or litellm (chat models)."""
        if MODELS[self.model].chat:
            return f"  litellm model string: openai/{self.model}   api_base: {self.base_url}   (any api_key)"
        args = (
            f"model={self.model},base_url={self.base_url}/completions,"
            "tokenizer_backend=None,tokenized_requests=False,num_concurrent=1"
        )
        return (
            f"  lm_eval --model local-completions --model_args {args} \\\n"
            '      --include_path "$(lm-eval-abo tasks-path)" --tasks abo_object_counting_synth'
        )

    def log_text(self) -> str:
        """What the server has written to its log so far (llama.cpp's load log among it)."""
        self.log.flush()
        self.log.seek(0)
        return self.log.read().decode("utf-8", "replace")

    def ended(self) -> str:
        """Why the server process ended, in one line (a native crash says how to avoid it)."""
        code = self.process.returncode
        if code is not None and code < 0 and code != -signal.SIGTERM:
            return buffers.crash_text(self.model, -code, self.extra_buffers)
        lines = self.log_text().strip().splitlines()
        return f"the {self.model} server exited: {lines[-1] if lines else 'no output'}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def _check_port(port: int) -> None:
    with socket.socket() as s:
        # as the server binds: a port whose old connections linger (TIME_WAIT) after a restart is free
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((HOST, port))
        except OSError:
            raise AboError(f"port {port} on {HOST} is in use; choose another port, or omit it to get a free one") from None


def _wait_ready(server: Server) -> None:
    deadline = time.time() + READY_TIMEOUT_S
    while time.time() < deadline:
        if server.process.poll() is not None:
            raise AboError(f"{server.ended()} (at start)")
        try:
            with urllib.request.urlopen(f"{server.base_url}/models", timeout=1) as r:
                if json.load(r).get("data"):
                    return
        except OSError:
            time.sleep(0.2)
    raise AboError(f"the {server.model} server did not answer within {READY_TIMEOUT_S} s")


def start(model: str, port: int | None = None, n_ctx: int = 4096) -> Server:
    if model not in MODELS:
        raise AboError(f"unknown embedded model {model!r}; known: {', '.join(MODELS)}")
    if port is None:
        port = free_port()
    else:
        _check_port(port)
    try:
        import llama_cpp.server  # noqa: F401
    except ImportError:
        raise AboError("the server needs llama-cpp-python[server]; pip install 'lm-eval-abo[embedded]'") from None
    path, extra = model_path(model), buffers.use_extra_buffers()
    buffers.checked(model, path, extra)  # a native crash is one line here, not a server that dies at its first reply
    command = [
        sys.executable, "-m", "lm_eval_abo.embedded.server_child", "on" if extra else "off", "--model", str(path),
        "--model_alias", model, "--host", HOST, "--port", str(port), "--n_threads", str(N_THREADS), "--n_ctx", str(n_ctx),
    ]
    log = tempfile.TemporaryFile()
    process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log)
    server = Server(model, port, process, log, extra)
    try:
        _wait_ready(server)
    except BaseException:
        stop(server)
        raise
    return server


def stop(server: Server) -> None:
    if server.process.poll() is None:
        server.process.terminate()
        try:
            server.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.process.kill()
            server.process.wait()
    server.log.close()


@contextmanager
def running(models: list[str], ports: list[int | None] | None = None):
    """Start one server per model; stop them all on exit, however it happens."""
    servers: list[Server] = []
    try:
        for model, port in zip(models, ports or [None] * len(models)):
            servers.append(start(model, port))
        yield servers
    finally:
        for server in servers:
            stop(server)


def serve_forever(models: list[str], ports: list[int | None] | None = None) -> None:
    """The `serve` command: start, print how to connect, wait for Ctrl-C or SIGTERM, stop cleanly."""
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    with running(models, ports) as servers:
        for server in servers:
            print(f"{server.model} ready at {server.base_url} (pid {server.process.pid})")
            print(server.usage())
        print("Press Ctrl-C to stop.", flush=True)
        try:
            while all(s.process.poll() is None for s in servers):
                time.sleep(0.5)
            raise AboError(next(s.ended() for s in servers if s.process.poll() is not None))
        except KeyboardInterrupt:
            print("stopping")
