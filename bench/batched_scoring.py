"""Batched candidate scoring: all candidates of a round in one lm-eval pass versus one pass per candidate.

The target is lm-eval's own `local-completions` backend with `num_concurrent=N`, against
bench/latency_server.py: a SIMULATED API that answers every request after a fixed delay and serves
many at once (as a GPU server or a hosted API does; a llama-cpp-python server answers one request at a
time, so it would show no difference). Both ways score the same candidates on the same dev examples
through `Bridge.score`, each with a fresh bridge (nothing memoised); they alternate, and the median of
the per-repeat ratios is reported for each concurrency.

With K candidates of n examples, one pass keeps the N request slots full across candidates:
about ceil(K*n/N) latency periods, against K*ceil(n/N) for a pass per candidate.

    python bench/batched_scoring.py                                  # 8 candidates x 10 dev, N = 1, 8, 32
    python bench/batched_scoring.py --concurrency 8 --repeats 1 --delay 0.1
"""

from __future__ import annotations

import argparse
import math
import subprocess
import sys
import time
import urllib.request
from dataclasses import replace

import record


def start_server(port: int, delay: float) -> subprocess.Popen:
    process = subprocess.Popen([sys.executable, str(record.BENCH_DIR / "latency_server.py"), "--port", str(port), "--delay", str(delay)],
                               stdout=subprocess.DEVNULL)
    deadline = time.time() + 30
    while time.time() < deadline:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/models", timeout=1).close()
            return process
        except OSError:
            time.sleep(0.1)
    process.kill()
    raise RuntimeError("the simulated API did not start")


def target(port: int, concurrency: int):
    import lm_eval.models  # noqa: F401
    from lm_eval.api.registry import get_model

    args = (f"model=simulated,base_url=http://127.0.0.1:{port}/v1/completions,num_concurrent={concurrency},"
            "tokenizer_backend=None,tokenized_requests=False,max_retries=1")
    return get_model("local-completions").create_from_arg_string(args, {"batch_size": 1})


def candidates(bridge, count: int, tag: str):
    base = bridge.default_prompt
    return [replace(base, instruction=f"{base.instruction} Count carefully ({tag}.{i}).") for i in range(count)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--candidates", type=int, default=8, help="candidates per round (APO's round with the small preset: 8)")
    parser.add_argument("--dev", type=int, default=10, help="dev examples per candidate (the small preset: 10)")
    parser.add_argument("--concurrency", default="1,8,32", help="num_concurrent values, comma-separated")
    parser.add_argument("--delay", type=float, default=0.5, help="the simulated API's latency per request, seconds")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    load_at_start = record.header("Batched candidate scoring: one lm-eval pass per round vs one per candidate")
    print(f"target: lm-eval local-completions against a SIMULATED API (fixed {args.delay} s latency per request, "
          "unlimited parallelism; bench/latency_server.py)\n")

    from lm_eval.tasks import TaskManager
    from lm_eval_abo.serve import free_port

    from lm_eval_abo.scoring import Bridge
    from lm_eval_abo.tasks import tasks_dir

    manager = TaskManager(include_path=str(tasks_dir()), include_defaults=False, metadata={"abo_n_dev": args.dev})
    port = free_port()
    server = start_server(port, args.delay)
    indices = list(range(args.dev))
    rows, raw = [], []
    try:
        for concurrency in [int(c) for c in args.concurrency.split(",")]:
            lm = target(port, concurrency)
            times: dict[str, list[float]] = {"one pass": [], "pass per candidate": []}
            for repeat in range(args.repeats):
                order = ("one pass", "pass per candidate") if repeat % 2 == 0 else ("pass per candidate", "one pass")
                for way in order:
                    bridge = Bridge(lm, record.TASK, manager)
                    prompts = candidates(bridge, args.candidates, f"{concurrency}.{repeat}")
                    with record.stopwatch() as elapsed:
                        if way == "one pass":
                            bridge.score(prompts, "dev", indices)
                        else:
                            for prompt in prompts:
                                bridge.score([prompt], "dev", indices)
                    assert bridge.target_requests == args.candidates * args.dev
                    times[way].append(elapsed())
            ratios = [b / a for a, b in zip(times["one pass"], times["pass per candidate"])]
            k, n = args.candidates, args.dev
            rows.append({
                "num_concurrent": concurrency, "requests": k * n,
                "one pass s": record.median(times["one pass"]), "pass per candidate s": record.median(times["pass per candidate"]),
                "speed-up": record.median(ratios),
                "latency-bound expectation": (k * math.ceil(n / concurrency)) / math.ceil(k * n / concurrency),
            })
            raw.append({"num_concurrent": concurrency, "times_s": times, "ratios": ratios, "load_average": record.load_average()})
            print(f"num_concurrent={concurrency}: done (load {record.load_average()})", flush=True)
    finally:
        server.terminate()
        server.wait()
    print()
    print(record.table(rows))
    print(f"\n{args.candidates} candidates x {args.dev} dev examples; speed-up = pass per candidate / one pass "
          f"(median of {args.repeats}); goal >= 1.5 with num_concurrent > 1")
    record.save("batched_scoring", {"load_average_1min_at_start": load_at_start, "simulated_latency_s": args.delay,
                                    "candidates": args.candidates, "dev": args.dev, "rows": rows, "raw": raw})


if __name__ == "__main__":
    main()
