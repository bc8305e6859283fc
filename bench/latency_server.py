"""A SIMULATED API for benchmarks only: an OpenAI-compatible /v1/completions server on 127.0.0.1 that
answers every request after a fixed delay, many requests at once (one thread each).

It stands for a backend that parallelises, such as a GPU server or a hosted API, whose latency per
request barely depends on how many requests are in flight. It does no inference: its answer is a
fixed sentence. Figures measured against it show what batching buys under simulated latency, not model
speed. `/v1/chat/completions` answers at once, as an optimizer whose replies carry every tag the
meta-prompts ask for (`fakes.instant_reply`), so a whole `optimize` run can go against it.

    python bench/latency_server.py --port 8123 --delay 0.5
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from fakes import instant_reply

HOST = "127.0.0.1"


def make_handler(delay_s: float):
    counter = {"requests": 0}
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:  # quiet
            pass

        def _send(self, status: int, body: dict) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            if self.path.rstrip("/") == "/v1/models":
                self._send(200, {"object": "list", "data": [{"id": "simulated", "object": "model"}]})
            elif self.path.rstrip("/") == "/stats":
                self._send(200, dict(counter))
            else:
                self._send(404, {"error": "not found"})

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            request = json.loads(self.rfile.read(length) or b"{}")
            if self.path.rstrip("/").endswith("/chat/completions"):
                text = instant_reply("\n".join(str(m.get("content", "")) for m in request.get("messages", [])))
                self._send(200, {"id": "sim", "object": "chat.completion", "created": int(time.time()), "model": "simulated",
                                 "choices": [{"index": 0, "finish_reason": "stop",
                                              "message": {"role": "assistant", "content": text}}],
                                 "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}})
                return
            prompts = request.get("prompt", "")
            prompts = prompts if isinstance(prompts, list) else [prompts]
            with lock:
                counter["requests"] += 1
            time.sleep(delay_s)  # the simulated latency
            choices = [{"index": i, "text": " Step 1: I count the items. So the answer is 3.", "finish_reason": "stop", "logprobs": None}
                       for i in range(len(prompts))]
            self._send(200, {"id": "sim", "object": "text_completion", "created": int(time.time()), "model": "simulated",
                             "choices": choices, "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}})

    return Handler


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--delay", type=float, default=0.5, help="seconds before each answer (the simulated latency)")
    args = parser.parse_args()
    server = ThreadingHTTPServer((HOST, args.port), make_handler(args.delay))
    server.daemon_threads = True
    server.request_queue_size = 256
    print(f"simulated API (fixed {args.delay} s latency) at http://{HOST}:{args.port}/v1", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
