"""End to end: the README's main command, timed per phase.

Runs `lm-eval-abo optimize --task abo_object_counting_synth --method abo --output runs` (the small preset:
2 rounds, beam 2, minibatch 4, train 16 / dev 10 / test 30, the embedded models) in this process through
the CLI's own entry point, from cold: fresh optimizer and target caches (the default optimizer cache in
~/.cache may hold replies from earlier runs). A meter on the embedded models (bench/meter.py) adds the
target's tokens, which lm-eval does not report. The caches are kept under bench/results/end_to_end/ so
that `bench/caching.py --after-end-to-end` can repeat the run against them.

    python bench/end_to_end.py
    python bench/end_to_end.py -- --rounds 1 --dev-limit 2 --test-limit 2 --train-limit 4   # a quick check
"""

from __future__ import annotations

import argparse
import shutil

import record
from meter import Meter, split_by_counts, totals

WORK = record.RESULTS_DIR / "end_to_end"
GOAL_S = 600


def readme_command(work, extra: list[str]) -> list[str]:
    return ["optimize", "--task", record.TASK, "--method", "abo", "--output", str(work / "runs"),
            "--use_cache", str(work / "target-cache" / "gemma"), "--optimizer-cache", str(work / "optimizer-cache"), *extra]


def phase_rows(artifact, meter: Meter) -> tuple[list[dict], dict]:
    """Per round and for the test evaluation: seconds, optimizer calls and tokens, target requests and tokens."""
    from lm_eval_abo.embedded.models import DEFAULT_OPTIMIZER, DEFAULT_TARGET

    usage, trace = artifact.usage, artifact.trace
    target_calls = meter.of(DEFAULT_TARGET)
    # requests that reached the model (those lm-eval's cache answered never do), per round and for the test
    counts = [u["calls"] - u["cache_hits"] for u in [*(r["target"] for r in trace), usage["test"]]]
    per_phase = split_by_counts(target_calls, counts)
    rows = []
    for r, calls in zip(trace, per_phase):
        opt, tgt = r["optimizer"], totals(calls)
        rows.append({"phase": f"round {r['round']}", "seconds": r["seconds"], "optimizer s": r["optimizer_seconds"],
                     "optimizer calls": opt["calls"], "optimizer tokens in/out": f"{opt['prompt_tokens']}/{opt['completion_tokens']}",
                     "target s": r["target_seconds"], "target requests": r["target"]["calls"],
                     "target tokens in/out": f"{tgt['prompt_tokens']}/{tgt['completion_tokens']}"})
    test = totals(per_phase[-1])
    rows.append({"phase": "test evaluation", "seconds": usage["test_seconds"], "target s": usage["test_seconds"],
                 "target requests": usage["test"]["calls"], "target tokens in/out": f"{test['prompt_tokens']}/{test['completion_tokens']}"})
    optimizer_model = totals(meter.of(DEFAULT_OPTIMIZER))
    summary = {
        "optimizer": {"seconds": usage["optimizer_seconds"], "calls": usage["optimizer"]["calls"],
                      "cache_hits": usage["optimizer"]["cache_hits"], "prompt_tokens": usage["optimizer"]["prompt_tokens"],
                      "completion_tokens": usage["optimizer"]["completion_tokens"], "model": optimizer_model},
        "target scoring (search)": {"seconds": usage["target_seconds"], "requests": usage["target"]["calls"] - usage["test"]["calls"],
                                    **{k: v for k, v in totals([c for p in per_phase[:-1] for c in p]).items() if k != "calls"}},
        "test evaluation": {"seconds": usage["test_seconds"], "requests": usage["test"]["calls"],
                            **{k: v for k, v in test.items() if k != "calls"}},
        "target calls metered": len(target_calls),
    }
    return rows, summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("extra", nargs="*", help="more optimize flags, after --")
    args = parser.parse_args()
    load_at_start = record.header("End to end: the README's main command (abo, small preset, embedded models)")

    shutil.rmtree(WORK, ignore_errors=True)
    WORK.mkdir(parents=True)
    command = readme_command(WORK, args.extra)
    meter = None
    with record.stopwatch() as elapsed:
        # imported inside the clock: a user's run pays the imports
        from lm_eval_abo import cli

        meter = Meter().install()
        code = cli.main(command)
    wall = elapsed()
    if code:
        raise SystemExit(f"optimize exited {code}")

    from lm_eval_abo.artifact import store

    artifact = store.load(WORK / "runs" / record.TASK / "abo" / "best.yaml")
    rows, summary = phase_rows(artifact, meter)
    accounted = sum(r["seconds"] for r in rows)
    print(f"\ncommand: lm-eval-abo {' '.join(command)}\n")
    print(record.table(rows, ["phase", "seconds", "optimizer s", "optimizer calls", "optimizer tokens in/out",
                              "target s", "target requests", "target tokens in/out"]))
    print(f"\nwall time {wall:.0f} s ({wall / 60:.1f} min; goal <= {GOAL_S / 60:.0f} min): rounds and test {accounted:.0f} s, "
          f"start-up, model loads and files {wall - accounted:.0f} s; load average at start {load_at_start}, at end {record.load_average()}")
    print(f"optimizer: {summary['optimizer']['seconds']} s, {summary['optimizer']['calls']} calls, "
          f"{summary['optimizer']['prompt_tokens']}+{summary['optimizer']['completion_tokens']} tokens "
          f"(model time {summary['optimizer']['model']['model_s']} s)")
    print(f"target scoring: {summary['target scoring (search)']['seconds']} s, {summary['target scoring (search)']['requests']} requests; "
          f"test evaluation: {summary['test evaluation']['seconds']} s, {summary['test evaluation']['requests']} requests")
    record.save("end_to_end", {
        "load_average_1min_at_start": load_at_start, "wall_s": wall, "goal_s": GOAL_S, "within_goal": wall <= GOAL_S,
        "cli_args": command, "work_dir": str(WORK), "phases": rows, "summary": summary,
        "dev": artifact.scores["dev"], "test": artifact.scores.get("test"), "baseline_dev": artifact.scores["baseline_dev"],
    })


if __name__ == "__main__":
    main()
