"""A controllable OpenAI-compatible server on 127.0.0.1, for fault tests (a test tool, never used by
the package).

Each request gets an `Action`: the next one queued with `then(...)`, else the server's `default`
(a function of the request). Actions: a normal reply, an HTTP status (429 with Retry-After, 5xx), a
delay, a connection that is accepted and never answered, a connection closed without a reply, a
malformed body. It answers `/v1/chat/completions` (litellm `openai/<alias>` with `api_base`) and
`/v1/completions` (lm-eval `local-completions`) with OpenAI's `usage` (counting a token a word); every
request is recorded, with the usage its reply reported. Beside it: the scripted optimizer of paper-table's
tests, and the tiny `optimize` runs (a command, a config) that target and optimize against such a server.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from conftest import bin_path

from lm_eval_abo.config import OptimizeConfig


@dataclass
class Request:
    path: str
    headers: dict
    body: dict
    usage: dict | None = None  # the `usage` the reply reported (a token a word), once answered

    @property
    def text(self) -> str:
        """The prompt: the chat messages joined, or the completion prompt."""
        if "messages" in self.body:
            return "\n".join(str(m.get("content", "")) for m in self.body["messages"])
        prompt = self.body.get("prompt", "")
        return "\n".join(prompt) if isinstance(prompt, list) else str(prompt)


@dataclass
class Action:
    kind: str  # reply, json (a body as it is), status, hang, close, malformed
    text: str = ""
    status: int = 200
    headers: dict = field(default_factory=dict)
    delay_s: float = 0.0  # before acting


def reply(text: str, delay_s: float = 0.0) -> Action:
    return Action("reply", text=text, delay_s=delay_s)


def status(code: int, retry_after: float | None = None, message: str = "scripted failure") -> Action:
    headers = {"Retry-After": str(retry_after)} if retry_after is not None else {}
    body = json.dumps({"error": {"message": message, "type": "scripted"}})
    return Action("status", text=body, status=code, headers=headers)


def embeddings(request: Request, vector_of: Callable[[str], list[float]]) -> Action:
    """An OpenAI `/v1/embeddings` reply: `vector_of` each input (text or a list of texts), a token a word."""
    texts = request.body.get("input")
    texts = [texts] if isinstance(texts, str) else list(texts or [])
    tokens = sum(len(str(t).split()) for t in texts)
    body = {"object": "list", "model": request.body.get("model", "fake"),
            "data": [{"object": "embedding", "index": i, "embedding": vector_of(str(t))} for i, t in enumerate(texts)],
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}
    return Action("json", text=json.dumps(body))


def hang() -> Action:
    """Read the request, then never answer (until the server stops)."""
    return Action("hang")


def close() -> Action:
    """Close the connection without a reply."""
    return Action("close")


def malformed() -> Action:
    """HTTP 200 with a body that is not JSON."""
    return Action("malformed", text='{"choices": [ this is not json')


def variant(request: Request, stem: str = "Count every item") -> str:
    """A deterministic instruction that differs per request."""
    return f"{stem} ({hashlib.sha256(request.text.encode()).hexdigest()[:6]})."


def optimizer_default(request: Request) -> Action:
    """A well-behaved optimizer: a tagged instruction that differs per request."""
    return reply(f"<prompt>{variant(request)}</prompt>")


def target_or_optimizer(request: Request) -> Action:
    """Both models of a run on one server: the optimizer's instructions (chat), and a target whose answer
    depends on the prompt (some right), for lm-eval's `local-completions` (see `target_args`)."""
    if request.path.endswith("/chat/completions"):
        return optimizer_default(request)
    return reply(f" So the answer is {int(hashlib.sha256(request.text.encode()).hexdigest()[:4], 16) % 6}.")


def target_args(server: FakeServer) -> str:
    """--model_args of lm-eval's `local-completions` for the target on `server`."""
    return (f"model=fake,base_url={server.base_url}/completions,tokenizer_backend=None,tokenized_requests=False,"
            "max_retries=1")


class FakeServer:
    def __init__(self, default: Callable[[Request], Action] = optimizer_default):
        self.default = default
        self.requests: list[Request] = []
        self._queue: deque[Action] = deque()
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self.on_request: Callable[[Request], None] | None = None  # called as each request arrives
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    @property
    def port(self) -> int:
        return self._httpd.server_address[1]

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def then(self, *actions: Action) -> FakeServer:
        with self._lock:
            self._queue.extend(actions)
        return self

    def count(self, path_end: str = "") -> int:
        return sum(r.path.endswith(path_end) for r in self.requests)

    def __enter__(self) -> FakeServer:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stopping.set()
        self._httpd.shutdown()
        self._httpd.server_close()

    def _next(self, request: Request) -> Action:
        with self._lock:
            self.requests.append(request)
            queued = self._queue.popleft() if self._queue else None
        if self.on_request:
            self.on_request(request)
        return queued or self.default(request)

    def _handler(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # keep test output clean
                pass

            def do_GET(self):
                self._send(200, json.dumps({"object": "list", "data": [{"id": "fake", "object": "model"}]}))

            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                try:
                    body = json.loads(raw or b"{}")
                except json.JSONDecodeError:
                    body = {}
                request = Request(self.path, dict(self.headers), body)
                action = server._next(request)
                if action.delay_s:
                    server._stopping.wait(action.delay_s)
                if action.kind == "hang":
                    server._stopping.wait()
                    self.close_connection = True
                elif action.kind == "close":
                    self.close_connection = True
                elif action.kind == "malformed":
                    self._send(200, action.text)
                elif action.kind == "json":
                    request.usage = json.loads(action.text).get("usage")
                    self._send(200, action.text)
                elif action.kind == "status":
                    self._send(action.status, action.text, action.headers)
                else:
                    completion = _completion(request, action.text)
                    request.usage = completion["usage"]
                    self._send(200, json.dumps(completion))

            def _send(self, code: int, text: str, headers: dict | None = None):
                data = text.encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                self.end_headers()
                try:
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):  # the client gave up (its time-out)
                    pass

        return Handler


def _completion(request: Request, text: str) -> dict:
    usage = {"prompt_tokens": len(request.text.split()), "completion_tokens": len(text.split())}
    usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
    common = {"id": "fake-1", "created": int(time.time()), "model": request.body.get("model", "fake"), "usage": usage}
    if request.path.endswith("/chat/completions"):
        choice = {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
        return {**common, "object": "chat.completion", "choices": [choice]}
    prompts = request.body.get("prompt", "")
    n = len(prompts) if isinstance(prompts, list) else 1
    choices = [{"index": i, "text": text, "finish_reason": "stop", "logprobs": None} for i in range(n)]
    return {**common, "object": "text_completion", "choices": choices}


def scripted(request):
    """Every meta-prompt answered in its own tags; worked solutions follow the steps shown and reach the
    gold answer when it is given."""
    text = request.text
    if "<procedure>" in text and "Write the steps" in text:
        return reply("<procedure>1. Find the kind asked about.\n2. Count each item of that kind.\n3. Add them up.</procedure>")
    if "<solution>" in text:
        gold = re.search(r"correct final answer is (\d+)", text)
        steps = "\n".join(f"Step {i}: done." for i in range(1, len(re.findall(r"^\d+\. ", text, flags=re.M)) + 1))
        return reply(f"<solution>{steps}\nSo the answer is {gold.group(1) if gold else 0}.</solution>")
    if "<step>" in text:
        return reply("<step>2</step><kind>not_followed</kind><why>Skipped.</why>")
    if "<steps>" in text:
        return reply("<steps>1. Name the kind.\n2. Cross out the rest.</steps>")
    tag = next((t for t in ("reason", "summary", "procedure", "prompt") if f"<{t}>" in text), "prompt")
    return reply(f"<{tag}>Say the magic word and count the items carefully, take {len(text) % 97}.</{tag}>")


SIZES = ["--beam", "1", "--train-limit", "4", "--dev-limit", "2", "--test-limit", "2", "--minibatch", "2",
         "--method-args", "paraphrases=1", "--gen_kwargs", "max_gen_toks=24", "--no-optimizer-cache"]


def optimize_command(server, model_args: str, output: str, rounds: int, *extra: str) -> list[str]:
    return [bin_path("lm-eval-abo"), "optimize", "--task", "abo_object_counting_synth", "--method", "ape", "--rounds", str(rounds), *SIZES,
            "--model", "local-completions", "--model_args", model_args, "--optimizer", "openai/fake",
            "--optimizer_args", f"api_base={server.base_url},api_key=x,retry_backoff=0.1", "--output", output, *extra]


def cell_config(server, output, seed, method="ape", **more) -> OptimizeConfig:
    """A tiny run against `server` as both the target (local-completions) and the optimizer; `more` over it."""
    settings = dict(task="abo_object_counting_synth", method=method, model="local-completions", model_args=target_args(server),
                    optimizer="openai/fake", optimizer_args={"api_base": server.base_url, "api_key": "x"},
                    optimizer_cache=None, rounds=1, beam=1, train_limit=4, dev_limit=3, test_limit=3, minibatch=2,
                    method_args={"paraphrases": 1} if method == "ape" else {}, seed=seed,
                    output=str(output / f"seed-{seed}"))
    return OptimizeConfig(**{**settings, **more})
