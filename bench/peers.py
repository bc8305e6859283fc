"""Peers: ABO, the best APO method and GEPA side by side, at the same optimizer-call budget.

Per task, each method runs `optimize` in this process on the embedded models (the target loaded once and
shared), with the same sizes, seed and optimizer, the same `--max-optimizer-calls` cap, `--patience 0`
(no method stops before its rounds or its budget), no target cache and a fresh optimizer cache each (every
call paid). The best APO method is the one with the best dev score among those given (`--apo`; one name
runs just that one; only the chosen run's cost is shown). Every method's best prompt and the task's
baseline are evaluated once by lm-eval on the same held-out test documents.

Per method: test score ± stderr (n), the paired difference from the baseline on the same test documents
(95% bootstrap interval, McNemar p), dev score, optimizer calls and tokens, target requests of the search,
search and test seconds; then each peer against ABO, paired on the same test documents. Runs are kept in
`--output` (reports, artifacts, GEPA's state); `--resume` reuses the finished ones and continues the rest.
The runs are the cells of one grid (`lm_eval_abo.run.grid`): `--executor local` (the default) runs them one
after another in this process, `--executor ray [--ray-address ADDR]` as Ray tasks; a run that fails is
left out of the table, named in the grid's table, and the benchmark exits 3.

    python bench/peers.py --apo apo     # 3 tasks, test n=100, gemma-3-270m with the 0.5B optimizer (71 minutes)
    python bench/peers.py --apo apo --target qwen2.5-coder-0.5b --optimizer embedded/qwen2.5-coder-1.5b  # the README pair
    python bench/peers.py --tasks abo_object_counting_synth --apo ape --rounds 1 --budget 8 --train 4 --dev 3 \\
        --test 3 --minibatch 2 --max-gen-toks 48 --method-args proposals=1,reflection_minibatch=2   # a quick check
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import record

from lm_eval_abo.config import DEFAULT_OPTIMIZER
from lm_eval_abo.embedded.models import DEFAULT_TARGET

TASKS = "abo_object_counting_synth,abo_navigate_synth,abo_bbh_object_counting"
APO = "ape,apo,apo-sum,promptagent,opro"
PEERS = "abo,apo,gepa"  # "apo" stands for the best APO method of --apo
BBH = record.REPO.parent / "shared" / "data" / "bbh"


def config_of(task: str, method: str, args):
    """One method on one task, as a cell of the grid."""
    from lm_eval_abo.config import OptimizeConfig, parse_pairs

    output = Path(args.output)
    return OptimizeConfig(
        task=task, method=method, rounds=args.rounds, beam=args.beam, minibatch=args.minibatch, train_limit=args.train,
        dev_limit=args.dev, test_limit=args.test, patience=0, max_optimizer_calls=args.budget, seed=args.seed,
        candidates=args.candidates, model_args=f"model={args.target}", optimizer=args.optimizer,
        optimizer_cache=str(output / "optimizer-caches" / task / method), output=str(output), resume=args.resume,
        metadata={"abo_data_dir": str(args.bbh_dir)} if task.startswith("abo_bbh_") else {},
        gen_kwargs={"max_gen_toks": args.max_gen_toks} if args.max_gen_toks else {},
        method_args={k: v for k, v in parse_pairs(args.method_args).items() if k in method_defaults(method)},
    )


def methods_of(args) -> list[str]:
    """The methods each task runs: the peers, with "apo" standing for every method of --apo."""
    return [m for peer in args.methods.split(",") for m in (args.apo.split(",") if peer == "apo" else [peer])]


def run_method(task: str, method: str, args) -> dict | None:
    """A finished run's summary (None: its cell failed)."""
    from lm_eval_abo.artifact import store

    artifact_path = Path(args.output) / task / method / "best.yaml"
    if not artifact_path.exists() or "test" not in store.load(artifact_path).scores:
        return None
    return summary(store.load(artifact_path), artifact_path.parent)


def method_defaults(method: str) -> dict:
    from lm_eval_abo.optimizers import METHODS

    return METHODS[method].defaults


def summary(artifact, run_dir: Path) -> dict:
    scores, usage = artifact.scores, artifact.usage
    test, comparison = scores["test"], scores["test_comparison"]
    notes = next((r["notes"] for r in reversed(artifact.trace) if r.get("notes")), {})
    return {
        "method": artifact.method, "test": test["value"], "stderr": test["stderr"], "n": test["n"],
        "vs_baseline": comparison["difference"], "ci": comparison["interval"], "mcnemar_p": comparison["mcnemar_p"],
        "baseline": scores["baseline_test"]["value"], "dev": scores["dev"]["value"],
        "answers": record.answers(test), "baseline_answers": record.answers(scores["baseline_test"]),
        "optimizer_calls": usage["optimizer"]["calls"],
        "tokens": usage["optimizer"]["prompt_tokens"] + usage["optimizer"]["completion_tokens"],
        "search_requests": usage["target"]["calls"] - usage["test"]["calls"], "search_s": usage["seconds"],
        "test_s": usage["test_seconds"],
        "detail": "; ".join([f"rounds {len(artifact.trace) - 1}" + (f" ({usage['stopped']})" if usage.get("stopped") else ""),
                             *(f"{k.replace('_', ' ')} {v}" for k, v in notes.items() if k != "stopped_by")]),
        "results": str(run_dir / test["results_file"]), "metric": test["metric"],
    }


def per_example(row: dict) -> dict[str, float]:
    from lm_eval_abo.reports import results

    [result] = results.read(Path(row["results"]))
    return result.per_example(row["metric"])


def versus(abo: dict, other: dict) -> dict:
    """`other` against ABO on the same test documents (paired: interval, McNemar for 0/1 metrics, a paired
    permutation test for graded ones)."""
    from lm_eval_abo.infra import stats

    a, b = per_example(abo), per_example(other)
    c = stats.compare(a, b)  # per-example values of a mean metric; McNemar where they are 0/1
    return {"method": other["method"], "difference": c.difference, "ci": list(c.interval), "mcnemar_p": c.mcnemar_p,
            "permutation_p": c.permutation_p,
            "n": c.n, "verdict": c.verdict().replace("the baseline", "ABO")}


def task_rows(task: str, args) -> tuple[list[dict], list[dict]]:
    rows = []
    for peer in args.methods.split(","):
        if peer != "apo":
            rows += [row for row in [run_method(task, peer, args)] if row]
            continue
        tried = [row for row in (run_method(task, m, args) for m in args.apo.split(",")) if row]
        if not tried:
            continue
        best = max(tried, key=lambda r: r["dev"])  # the first listed wins a tie
        best["detail"] += "; best APO by dev: " + ", ".join(f"{r['method']} {r['dev']:.3f}" for r in tried)
        rows.append(best)
    abo = next((r for r in rows if r["method"] == "abo"), None)
    against = [versus(abo, r) for r in rows if abo and r is not abo]
    for r in rows:
        r["task"] = task
    return rows, [{"task": task, **v} for v in against]


def fmt(value, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def markdown(rows: list[dict], against: list[dict], args) -> str:
    lines = [
        f"Target {args.target}, optimizer {args.optimizer}; per method: rounds {args.rounds}, beam {args.beam}, train {args.train}, dev "
        f"{args.dev}, at most {args.budget} optimizer calls"
        f"{f', {args.candidates} candidates a round' if args.candidates else ''}, `--patience 0`, fresh optimizer cache, "
        "no target cache.",
        "",
        "| task | method | test ± stderr (n) | vs baseline (95% CI, McNemar p) | answers (unreadable) | dev | "
        "optimizer calls | tokens | target requests (search) | search s | test s | detail |",
        "|---|---|---|---|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    tasks = list(dict.fromkeys(r["task"] for r in rows))
    for task in tasks:
        mine = [r for r in rows if r["task"] == task]
        lines.append(f"| {task} | baseline (the task's prompt) | {fmt(mine[0]['baseline'])} ({mine[0]['n']}) | | "
                     f"{mine[0]['baseline_answers']} | | | | | | | |")
        for r in mine:
            p = f", p={r['mcnemar_p']:.3g}" if r["mcnemar_p"] is not None else ""
            lines.append(
                f"| {task} | {r['method']} | {fmt(r['test'])} ± {fmt(r['stderr'])} ({r['n']}) | {r['vs_baseline']:+.3f} "
                f"({r['ci'][0]:+.3f} to {r['ci'][1]:+.3f}{p}) | {r['answers']} | {fmt(r['dev'])} | {r['optimizer_calls']} | {r['tokens']:,} | "
                f"{r['search_requests']} | {r['search_s']:.0f} | {r['test_s']:.0f} | {r['detail'] or '-'} |"
            )
    if against:
        lines += ["", "Each peer against ABO on the same test documents:", "",
                  "| task | method | difference from ABO (95% CI) | McNemar p | verdict |", "|---|---|---|---:|---|"]
        lines += [f"| {v['task']} | {v['method']} | {v['difference']:+.3f} ({v['ci'][0]:+.3f} to {v['ci'][1]:+.3f}) | "
                  f"{fmt(v['mcnemar_p'], 3)} | {v['verdict']} |" for v in against]
    lines += ["", "By test score: " + "; ".join(standing([r for r in rows if r["task"] == task]) for task in tasks) + "."]
    return "\n".join(lines)


def standing(rows: list[dict]) -> str:
    """Who leads a task's test scores, and by how much over the next."""
    ranked = sorted(rows, key=lambda r: -r["test"])
    top = [r["method"] for r in ranked if r["test"] == ranked[0]["test"]]
    rest = ranked[len(top):]
    lead = f"{', '.join(top)} {'tie' if len(top) > 1 else 'leads'} at {ranked[0]['test']:.3f}"
    if rest:
        lead += f", {ranked[0]['test'] - rest[0]['test']:+.3f} over {rest[0]['method']}"
    return f"{rows[0]['task']}: {lead}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", default=TASKS)
    parser.add_argument("--methods", default=PEERS, help="peers to run; 'apo' is the best APO method of --apo")
    parser.add_argument("--apo", default=APO, help="APO methods the best (by dev) is chosen from; one name runs just it")
    parser.add_argument("--budget", type=int, default=20, help="optimizer calls each method may make (--max-optimizer-calls)")
    record.add_size_flags(parser, rounds=4, test=100, rounds_help="rounds each method may run; most reach the call budget first")
    parser.add_argument("--candidates", type=int, default=None,
                        help="new candidates every round asks for, the same for every method (optimize --candidates)")
    parser.add_argument("--seed", type=int, default=1234)
    parser.add_argument("--target", default=DEFAULT_TARGET, help=f"the embedded target model (default: {DEFAULT_TARGET})")
    parser.add_argument("--optimizer", default=DEFAULT_OPTIMIZER, help=f"the optimizer (default: {DEFAULT_OPTIMIZER})")
    parser.add_argument("--method-args", default="", help="k=v,... given to every method that has the parameter")
    parser.add_argument("--bbh-dir", type=Path, default=BBH, help="the real BIG-Bench-Hard files (abo_bbh_* tasks)")
    parser.add_argument("--output", default=str(record.RESULTS_DIR / "peers-runs"))
    parser.add_argument("--resume", action="store_true", help="reuse finished runs in --output, continue the others")
    parser.add_argument("--executor", choices=("local", "ray"), default="local",
                        help="local (default): one run after another in this process; ray: each run a Ray task")
    parser.add_argument("--ray-address", dest="ray_address", help="the Ray cluster of --executor ray (default: a local Ray)")
    args = parser.parse_args()
    load_at_start = record.header("Peers: ABO, the best APO method and GEPA at the same optimizer-call budget")

    from lm_eval_abo.embedded.backend import EmbeddedLM
    from lm_eval_abo.run.grid import run_grid

    tasks = []
    for task in args.tasks.split(","):
        if task.startswith("abo_bbh_") and not (args.bbh_dir / f"{task.removeprefix('abo_bbh_')}.json").exists():
            print(f"{task}: skipped, no BIG-Bench-Hard file in {args.bbh_dir} (--bbh-dir)")
            continue
        tasks.append(task)
    lm = EmbeddedLM(model=args.target) if args.executor == "local" else None  # the local cells share it
    rows, against = [], []
    with record.stopwatch() as elapsed:
        grid = run_grid([config_of(task, method, args) for task in tasks for method in methods_of(args)], args.output,
                        args.executor, args.ray_address, resume=args.resume, lm=lm, cell_out=lambda line: None)
        for task in tasks:
            found, task_against = task_rows(task, args)
            rows += found
            against += task_against
    text = markdown(rows, against, args)
    print()
    print(text)
    record.RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    (record.RESULTS_DIR / "peers.md").write_text(text + "\n")
    record.save("peers", {"load_average_1min_at_start": load_at_start, "settings": {**vars(args), "bbh_dir": str(args.bbh_dir)},
                          "rows": rows, "versus_abo": against, "wall_s": round(elapsed(), 1),
                          "failed": [r.to_dict() for r in grid.failed]})
    if grid.failed:
        sys.exit(3)


if __name__ == "__main__":
    main()
