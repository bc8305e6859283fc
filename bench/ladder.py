"""The model ladder: which (target, optimizer) pair, task and difficulty the README's main command runs on.

Each cell is the README's main command, `lm-eval-abo optimize --task T --method abo` at the small preset,
run as a user runs it (the CLI in a fresh process: model loads and imports counted), with the pair's
`--model_args`, `--apply_chat_template` where the pair's target is a chat model, and `--optimizer`, on
the data seed `--data-seed` (`--metadata abo_seed`) and difficulty `--difficulty`, from a fresh
optimizer cache and no target cache. Per cell: the baseline's and the best prompt's test score (n=30 at
the small preset), the paired difference with its 95% interval and McNemar p, how many different answers
each prompt gave and how many the task's filter could not read, and the wall time.

The README's criteria, in order: the baseline has headroom (above 0 or failing on format, below 0.8);
the best prompt's gain is one the test set can show (p < 0.05) without one constant answer; the command
ends in at most 12 minutes. Choose on one data seed, then report the chosen pair on a fresh one.

    python bench/ladder.py --data-seed 99                         # every pair on both synthetic tasks
    python bench/ladder.py --data-seed 1234 --pairs qwen-0.5b+qwen-0.5b --tasks abo_object_counting_synth
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import record

# label -> (target model, as a chat model?, optimizer model)
PAIRS = {
    "gemma-270m+qwen-0.5b": ("gemma-3-270m", False, "qwen2.5-coder-0.5b"),
    "qwen-0.5b-chat+qwen-0.5b": ("qwen2.5-coder-0.5b", True, "qwen2.5-coder-0.5b"),
    "qwen-0.5b+qwen-0.5b": ("qwen2.5-coder-0.5b", False, "qwen2.5-coder-0.5b"),
    "qwen-0.5b+qwen-1.5b": ("qwen2.5-coder-0.5b", False, "qwen2.5-coder-1.5b"),
    "qwen-0.5b-chat+qwen-1.5b": ("qwen2.5-coder-0.5b", True, "qwen2.5-coder-1.5b"),
    "gemma-270m+qwen-1.5b": ("gemma-3-270m", False, "qwen2.5-coder-1.5b"),
}
TASKS = "abo_object_counting_synth,abo_navigate_synth"
WORK = record.RESULTS_DIR / "ladder"


def command(label: str, task: str, args, folder: Path) -> list[str]:
    target, chat, optimizer = PAIRS[label]
    metadata = {"abo_seed": args.data_seed, "abo_difficulty": args.difficulty}
    return [sys.executable, "-m", "lm_eval_abo", "optimize", "--task", task, "--method", "abo", "--output",
            str(folder / "runs"), "--model", "abo-embedded", "--model_args", f"model={target}",
            *(["--apply_chat_template"] if chat else []), "--optimizer", f"embedded/{optimizer}",
            "--optimizer-cache", str(folder / "optimizer-cache"), "--metadata", json.dumps(metadata), *args.extra]


def cell(label: str, task: str, args) -> dict:
    folder = WORK / f"seed-{args.data_seed}-d{args.difficulty}" / label / task
    artifact = folder / "runs" / task / "abo" / "best.yaml"
    seconds_file = folder / "seconds"
    if not (args.resume and artifact.exists() and seconds_file.exists()):
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        started = time.perf_counter()
        proc = subprocess.run(command(label, task, args, folder), capture_output=True, text=True,
                              env={**os.environ, "PYTHONUNBUFFERED": "1"})
        (folder / "log.txt").write_text(proc.stdout + proc.stderr)
        if proc.returncode:
            return {"pair": label, "task": task, "error": (proc.stderr.strip().splitlines() or ["?"])[-1]}
        seconds_file.write_text(f"{time.perf_counter() - started:.1f}\n")
    from lm_eval_abo.artifact import store

    scores = store.load(artifact).scores
    base, best, comparison = scores["baseline_test"], scores["test"], scores["test_comparison"]
    return {
        "pair": label, "task": task, "baseline": base["value"], "best": best["value"], "n": best["n"],
        "gain": comparison["difference"], "ci": "{:+.3f}..{:+.3f}".format(*comparison["interval"]),
        "p": comparison["mcnemar_p"], "fixed": len(comparison["fixed"]), "broken": len(comparison["broken"]),
        "baseline answers": record.answers(base),
        "best answers": record.answers(best),
        "minutes": float(seconds_file.read_text()) / 60,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-seed", type=int, required=True, help="the tasks' data seed (--metadata abo_seed)")
    parser.add_argument("--difficulty", type=int, default=1, help="the synthetic tasks' abo_difficulty")
    parser.add_argument("--pairs", default=",".join(PAIRS), help=f"comma-separated, of: {', '.join(PAIRS)}")
    parser.add_argument("--tasks", default=TASKS)
    parser.add_argument("--resume", action="store_true", help="reuse the finished cells")
    parser.add_argument("extra", nargs="*", help="after --: more optimize flags")
    args = parser.parse_args()
    load = record.header(f"The model ladder, data seed {args.data_seed}, difficulty {args.difficulty}")
    rows = []
    for task in args.tasks.split(","):
        for label in args.pairs.split(","):
            rows.append(cell(label, task, args))
            print(record.table(rows[-1:]), flush=True)
    columns = ["pair", "task", "baseline", "best", "n", "gain", "ci", "p", "fixed", "broken", "baseline answers",
               "best answers", "minutes", "error"]
    print("\n" + record.table(rows, columns))
    record.save(f"ladder-seed-{args.data_seed}-d{args.difficulty}", {"load_average_1min_at_start": load, "rows": rows,
                                                                       "data_seed": args.data_seed,
                                                                       "difficulty": args.difficulty})


if __name__ == "__main__":
    main()
