"""Cost: optimizer calls and tokens per method per round, side by side, on the same task and budget.

Each method runs `optimize` in this process on the embedded models (the target loaded once and shared),
with the same sizes (default: the small preset, rounds 2, beam 2, minibatch 4, train 16 / dev 10; a
small test split, which costs no optimizer call), `--patience 0` so every method runs every round, and
a fresh optimizer cache each, so every call is paid. The projected column is what `--dry-run` prints:
the most calls a round can make before format retries (a retry is a call too).

    python bench/method_cost.py
    python bench/method_cost.py --methods ape,abo --rounds 1 --dev 2 --train 4 --max-gen-toks 32   # a quick check
"""

from __future__ import annotations

import argparse
import tempfile

import record

METHODS = "ape,apo,opro,promptagent,abo"


def run_method(method: str, args, lm, cache_dir: str, output: str) -> dict:
    from lm_eval_abo.optimize import OptimizeConfig, optimize, plan_session, projection

    config = OptimizeConfig(task=record.TASK, method=method, rounds=args.rounds, beam=args.beam, minibatch=args.minibatch,
                            train_limit=args.train, dev_limit=args.dev, test_limit=args.test, patience=0,
                            optimizer_cache=cache_dir, output=output,
                            gen_kwargs={"max_gen_toks": args.max_gen_toks} if args.max_gen_toks else {}).resolved()
    planned = plan_session(config)
    projected = projection(config, len(planned.dev_indices), len(planned.train_pool), planned.n_test)["rounds"]
    with record.stopwatch() as elapsed:
        outcome = optimize(config, out=lambda line: None, lm=lm)
    artifact = outcome.artifact_data
    rows = []
    for r, plan in zip(artifact.trace, projected):
        opt = r["optimizer"]
        rows.append({"method": method, "round": r["round"], "optimizer calls": opt["calls"], "projected calls": plan["optimizer_calls"],
                     "prompt tokens": opt["prompt_tokens"], "completion tokens": opt["completion_tokens"],
                     "tokens": opt["prompt_tokens"] + opt["completion_tokens"], "candidates": len(r["candidates"]),
                     "target requests": r["target_requests"], "optimizer s": r["optimizer_seconds"], "target s": r["target_seconds"],
                     "best dev": r["best"]["dev"]})
    return {"rows": rows, "wall_s": elapsed(), "test": artifact.scores["test"]["value"], "stopped": artifact.usage.get("stopped")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--methods", default=METHODS)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--beam", type=int, default=2)
    parser.add_argument("--minibatch", type=int, default=4)
    parser.add_argument("--train", type=int, default=16)
    parser.add_argument("--dev", type=int, default=10)
    parser.add_argument("--test", type=int, default=5)
    parser.add_argument("--max-gen-toks", type=int, default=None, help="the target's generation cap (default: the task's)")
    args = parser.parse_args()
    load_at_start = record.header("Cost per method per round (optimizer calls and tokens)")

    from lm_eval_abo.embedded.backend import EmbeddedLM
    from lm_eval_abo.embedded.models import DEFAULT_TARGET

    lm = EmbeddedLM(model=DEFAULT_TARGET)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for method in args.methods.split(","):
            results[method] = run_method(method, args, lm, f"{tmp}/{method}-cache", f"{tmp}/runs")
            print(f"{method}: {results[method]['wall_s']:.0f} s (load {record.load_average()})", flush=True)
    rows = [row for result in results.values() for row in result["rows"]]
    print()
    print(record.table(rows, ["method", "round", "optimizer calls", "projected calls", "prompt tokens", "completion tokens",
                              "candidates", "target requests", "optimizer s", "target s", "best dev"]))
    totals = [{"method": m, "optimizer calls": sum(r["optimizer calls"] for r in res["rows"]),
               "projected calls": sum(r["projected calls"] for r in res["rows"]), "tokens": sum(r["tokens"] for r in res["rows"]),
               "candidates": sum(r["candidates"] for r in res["rows"]), "target requests": sum(r["target requests"] for r in res["rows"]),
               "wall s": res["wall_s"], "test": res["test"]} for m, res in results.items()]
    print()
    print(record.table(totals))
    print(f"\nsizes: rounds {args.rounds}, beam {args.beam}, minibatch {args.minibatch}, train {args.train}, dev {args.dev}, "
          f"test {args.test}, patience 0, fresh optimizer cache per method")
    record.save("method_cost", {"load_average_1min_at_start": load_at_start, "settings": vars(args), "rows": rows, "totals": totals})


if __name__ == "__main__":
    main()
