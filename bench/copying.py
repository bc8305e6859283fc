"""Copying: how often the optimizer's candidates copy training content, without the check and with it.

ABO (and an APO method) on both synthetic tasks with the embedded models, run twice each from fresh
optimizer caches: `--no-copy 0` (before: copying candidates are scored and only flagged in their notes)
and `--no-copy 1` (after: they are rejected before scoring). Per run: the candidates proposed, how many
copied (flagged before, rejected after), whether the best prompt copies, and its dev and test scores.

    python bench/copying.py                      # abo and apo on both tasks, the small preset
    python bench/copying.py --methods abo -- --rounds 1 --train-limit 4 --dev-limit 3 --test-limit 3
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

import record

TASKS = "abo_object_counting_synth,abo_navigate_synth"


def run(task: str, method: str, no_copy: int, folder: Path, extra: list[str]) -> dict:
    from lm_eval_abo import cli
    from lm_eval_abo.artifact.store import load

    output = folder / f"{method}-{no_copy}"
    cache = folder / f"cache-{method}-{task}-{no_copy}"
    shutil.rmtree(cache, ignore_errors=True)
    argv = ["optimize", "--task", task, "--method", method, "--no-copy", str(no_copy), "--output", str(output),
            "--optimizer-cache", str(cache), *extra]
    with record.stopwatch() as elapsed:
        code = cli.main(argv)
    if code:
        sys.exit(f"optimize exited {code}: {' '.join(argv)}")
    artifact = load(output / task / method / "best.yaml")
    candidates = [c for r in artifact.trace for c in r["candidates"] if c["origin"] != "baseline"]
    rejected = [d for r in artifact.trace for d in r.get("dropped", []) if d["reason"].startswith("copies training")]
    flagged = [c for c in candidates if (c.get("notes") or {}).get("copies")]
    best_copies = next((c.get("notes", {}).get("copies") for r in artifact.trace for c in r["candidates"]
                        if artifact.prompt.sha256().startswith(c["key"])), None)
    return {"task": task, "method": method, "no_copy": no_copy,
            "candidates": len(candidates) + len(rejected), "copying": len(flagged) + len(rejected),
            "share copying": (len(flagged) + len(rejected)) / max(1, len(candidates) + len(rejected)),
            "best copies": bool(best_copies), "dev": artifact.scores["dev"]["value"], "test": artifact.scores["test"]["value"],
            "seconds": round(elapsed(), 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", default=TASKS)
    parser.add_argument("--methods", default="abo,apo")
    parser.add_argument("extra", nargs="*", help="flags for optimize, after --")
    args = parser.parse_args()
    load_average = record.header("Copying: candidates that copy training content, without and with the check")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for task in args.tasks.split(","):
            for method in args.methods.split(","):
                for no_copy in (0, 1):
                    rows.append(run(task, method, no_copy, Path(tmp), args.extra))
    print(record.table(rows))
    record.save("copying", {"load_average_1min_at_start": load_average, "extra": args.extra, "rows": rows})


if __name__ == "__main__":
    main()
