"""The cost per scored document of promptfoo's code assertions as an imported task grades them, against the
promptfoo CLI grading the same assertions on the same replies.

Here: `python` runs in this process, `javascript` in the run's one Node worker (`promptfoo/node.py`); a
deterministic `contains` is the floor. promptfoo 0.120.0 (`npx promptfoo eval`, echo provider, no cache)
starts a Python process per python assertion. The CLI's own start-up is taken out by running it on N and
on 2N tests: its cost per document is (t(2N) - t(N)) / N. Each figure is the median of `--repeats` runs.
Needs Node and the pinned promptfoo in node_modules/ (the promptfoo tests install it).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from record import REPO, header, median, save, stopwatch, table

sys.path.insert(0, str(REPO))

from lm_eval_abo.promptfoo import assertions, node

KINDS = {
    "contains": {"type": "contains", "value": "a"},
    "python": {"type": "python", "value": "len(output) > 3 and context['vars']['q'] == output"},
    "javascript": {"type": "javascript", "value": "output.length > 3 && context.vars.q === output"},
}


def ours(kind: str, n: int) -> float:
    """Seconds per document graded here (the Node worker already running)."""
    gradings = [({"assert": [KINDS[kind]], "vars": {"q": f"reply {i}"}, "prompt": f"reply {i}"}, f"reply {i}") for i in range(n)]
    with stopwatch() as elapsed:
        for grading, reply in gradings:
            assertions.grade(grading, reply)
    return elapsed() / n


def promptfoo(kind: str, n: int, folder: Path) -> float:
    """Wall seconds of `promptfoo eval` on n tests with one assertion of `kind` each."""
    config = folder / f"{kind}-{n}.yaml"
    tests = [{"vars": {"q": f"reply {i}"}, "assert": [KINDS[kind]]} for i in range(n)]
    config.write_text(json.dumps({"prompts": ["{{ q }}"], "providers": ["echo"], "tests": tests}))
    env = {**os.environ, "PROMPTFOO_DISABLE_TELEMETRY": "1", "PROMPTFOO_DISABLE_UPDATE": "1",
           "PROMPTFOO_CONFIG_DIR": str(folder / "state")}
    with stopwatch() as elapsed:
        subprocess.run([str(REPO / "node_modules" / ".bin" / "promptfoo"), "eval", "-c", str(config), "--no-cache",
                        "--no-table", "-o", str(folder / "out.json")], env=env, capture_output=True, check=False)
    return elapsed()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=40, help="documents per measurement (promptfoo: n and 2n)")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    load = header("promptfoo code assertions: cost per scored document")
    with stopwatch() as first:
        assertions.grade({"assert": [KINDS["javascript"]], "vars": {"q": "warm"}}, "warm")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for kind in KINDS:
            here = median([ours(kind, args.n) for _ in range(args.repeats)])
            pairs = [(promptfoo(kind, args.n, Path(tmp)), promptfoo(kind, 2 * args.n, Path(tmp))) for _ in range(args.repeats)]
            theirs = median([(double - single) / args.n for single, double in pairs])
            rows.append({"assertion": kind, "here ms/doc": here * 1000, "promptfoo CLI ms/doc": theirs * 1000,
                         "promptfoo / here": theirs / here if here else None})
    print(table(rows))
    print(f"\nNode worker start and first javascript assertion: {first() * 1000:.0f} ms (once per run; pid {node.worker().pid})")
    save("promptfoo_code_cost", {"n": args.n, "repeats": args.repeats, "load_average_1min_at_start": load,
                                 "node_start_ms": first() * 1000, "rows": rows})


if __name__ == "__main__":
    main()
