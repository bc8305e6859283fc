"""Caching: a second identical `optimize` run, against the caches the first one filled, must make no new
target and no new optimizer calls and take at most 10% of the first run's wall time.

Each run is its own `lm-eval-abo optimize` process, as a user runs it: same flags, same
`--use_cache PATH` (lm-eval's CachingLM for the target) and `--optimizer-cache DIR` (litellm's disk cache),
and a different `--output` (the first run's directory holds a finished run). What the artifacts count:
target requests are those that reached the model (the bridge counts below lm-eval's cache); optimizer
`calls` are requests answered, from the model or the cache, and `cache_hits` those the cache answered,
so new optimizer calls = calls - cache_hits.

    python bench/caching.py                       # both runs: the README's main command, from cold
    python bench/caching.py --after-end-to-end    # the second run only, against bench/end_to_end.py's caches
    python bench/caching.py -- --rounds 1 --dev-limit 2 --test-limit 2 --train-limit 4 --minibatch 2
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

import record

WORK = record.RESULTS_DIR / "caching"
GOAL_RATIO = 0.10


def run_optimize(args: list[str]) -> float:
    """One `lm-eval-abo optimize` process; returns its wall time."""
    command = [str(Path(sys.executable).parent / "lm-eval-abo"), *args]
    print(f"$ {' '.join(command)}", flush=True)
    with record.stopwatch() as elapsed:
        proc = subprocess.run(command, capture_output=True, text=True)
    if proc.returncode:
        raise SystemExit(f"optimize exited {proc.returncode}:\n{proc.stderr[-2000:]}")
    return elapsed()


def with_output(args: list[str], output: Path) -> list[str]:
    i = args.index("--output")
    return [*args[: i + 1], str(output), *args[i + 2 :]]


def counts(output: Path) -> dict:
    from lm_eval_abo.artifact import store

    artifact = store.load(output / record.TASK / "abo" / "best.yaml")
    usage = artifact.usage
    opt = usage["optimizer"]
    return {
        # requests that reached the target: those asked less those lm-eval's cache answered
        "target requests (search)": (usage["target"]["calls"] - usage["target"]["cache_hits"]
                                     - usage["test"]["calls"] + usage["test"]["cache_hits"]),
        "target requests (test)": usage["test"]["calls"] - usage["test"]["cache_hits"],
        "optimizer calls": opt["calls"], "optimizer cache hits": opt["cache_hits"],
        "new optimizer calls": opt["calls"] - opt["cache_hits"],
        "optimizer tokens": opt["prompt_tokens"] + opt["completion_tokens"],
        "prompt_sha256": artifact.prompt.sha256()[:12], "test score": artifact.scores["test"]["value"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--after-end-to-end", action="store_true",
                        help="take the first run from bench/results/end_to_end.json (same flags and caches)")
    parser.add_argument("extra", nargs="*", help="more optimize flags, after --")
    args = parser.parse_args()
    load_at_start = record.header("Caching: a second identical optimize run")

    if args.after_end_to_end:
        first = json.loads((record.RESULTS_DIR / "end_to_end.json").read_text())
        first_args, first_wall = first["cli_args"], first["wall_s"]
        first_output = Path(first_args[first_args.index("--output") + 1])
        print(f"first run: bench/end_to_end.py ({first_wall:.0f} s, in-process), caches in {first['work_dir']}\n")
    else:
        from end_to_end import readme_command

        shutil.rmtree(WORK, ignore_errors=True)
        WORK.mkdir(parents=True)
        first_args = readme_command(WORK, args.extra)
        first_output = WORK / "runs"
        first_wall = run_optimize(first_args)
    second_output = first_output.parent / "runs-again"
    shutil.rmtree(second_output, ignore_errors=True)
    second_wall = run_optimize(with_output(first_args, second_output))

    rows = [{"run": "first", "wall s": first_wall, **counts(first_output)},
            {"run": "second", "wall s": second_wall, **counts(second_output)}]
    print()
    print(record.table(rows))
    second = rows[1]
    ratio = second_wall / first_wall
    new_target = second["target requests (search)"] + second["target requests (test)"]
    print(f"\nsecond run: {new_target} new target requests, {second['new optimizer calls']} new optimizer calls "
          f"({second['optimizer cache hits']} answered by the cache); wall time {ratio:.1%} of the first (goal <= {GOAL_RATIO:.0%}); "
          f"same best prompt and test score: {rows[0]['prompt_sha256'] == second['prompt_sha256'] and rows[0]['test score'] == second['test score']}")
    record.save("caching", {"load_average_1min_at_start": load_at_start, "rows": rows, "ratio": ratio,
                            "new_target_requests": new_target, "new_optimizer_calls": second["new optimizer calls"],
                            "first_args": first_args})


if __name__ == "__main__":
    main()
