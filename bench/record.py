"""What every benchmark shares: the offline settings, the machine's load, timing, a markdown table, and
the JSON each one writes under bench/results/ (ignored by git).

Benchmarks report ratios measured inside one run: the machine is shared, so absolute seconds move with
its load, and the 1-minute load average is printed and stored beside every figure.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import sys
import time
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path

# Offline, as the package's CLI sets them: no price-map download on `import litellm`, no hub lookups.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

BENCH_DIR = Path(__file__).resolve().parent
RESULTS_DIR = BENCH_DIR / "results"
REPO = BENCH_DIR.parent
TASK = "abo_object_counting_synth"


def load_average() -> float:
    """The 1-minute load average (2 cores here: above ~1.5, other work is slowing the figures)."""
    return round(os.getloadavg()[0], 2)


def machine() -> dict:
    versions = {}
    for dist in ("lm-eval", "litellm", "llama-cpp-python", "datasets"):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            pass
    return {"cores": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform(), **versions}


@contextmanager
def stopwatch():
    """`with stopwatch() as elapsed: ...` then `elapsed()` gives the seconds (also while running)."""
    started = time.perf_counter()
    ended: list[float] = []
    yield lambda: (ended[0] if ended else time.perf_counter()) - started
    ended.append(time.perf_counter())


def median(values) -> float:
    return statistics.median(values)


def table(rows: list[dict], columns: list[str] | None = None) -> str:
    """A markdown table of dicts (columns: the first row's keys unless given)."""
    columns = columns or list(rows[0])

    def cell(value) -> str:
        if isinstance(value, float):
            return f"{value:.3f}" if abs(value) < 10 else f"{value:.1f}"
        return "-" if value is None else str(value)

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(row.get(c)) for c in columns) + " |" for row in rows]
    return "\n".join(lines)


def command_line() -> str:
    """How this benchmark was started, to print beside its figures."""
    script = Path(sys.argv[0])
    try:
        script = script.resolve().relative_to(REPO)
    except ValueError:
        pass
    return " ".join(["python", str(script), *sys.argv[1:]])


def save(name: str, data: dict) -> Path:
    """Write bench/results/<name>.json with the command, the machine and the load around the figures."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{name}.json"
    record = {"benchmark": name, "command": command_line(), "machine": machine(),
              "load_average_1min_at_end": load_average(), "created": time.strftime("%Y-%m-%dT%H:%M:%S"), **data}
    path.write_text(json.dumps(record, indent=2, default=str) + "\n")
    print(f"\nwritten: {path.relative_to(REPO)}")
    return path


def answers(score: dict) -> str:
    """How many different answers a prompt gave on the test documents, and the share its filter could not read:
    a format fix shows as fewer unreadable answers, a learned task as more right ones among several."""
    return f"{score['distinct_answers']} ({score['unread'] / score['n']:.0%} unreadable)"


def add_size_flags(parser, rounds: int, test: int, rounds_help: str | None = None) -> None:
    """The search's sizes every method-running benchmark takes, with the project's small defaults."""
    parser.add_argument("--rounds", type=int, default=rounds, help=rounds_help)
    parser.add_argument("--beam", type=int, default=2)
    parser.add_argument("--minibatch", type=int, default=4)
    parser.add_argument("--train", type=int, default=16)
    parser.add_argument("--dev", type=int, default=10)
    parser.add_argument("--test", type=int, default=test)
    parser.add_argument("--max-gen-toks", type=int, default=None, help="the target's generation cap (default: the task's)")


def header(title: str) -> float:
    """Print the benchmark's title, its command and the load it starts under; returns that load."""
    load = load_average()
    print(f"# {title}\n\ncommand: `{command_line()}`\n1-minute load average at start: {load} ({os.cpu_count()} cores)\n")
    return load
