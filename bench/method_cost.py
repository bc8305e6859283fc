"""Cost per method, and the projection's error: what each method used per round beside what the projection
(the table `--dry-run` prints) said it would, for the optimizer and the target, in calls, tokens and dollars.

Each method runs `optimize` in this process on the embedded models (the target loaded once and shared),
with the same sizes (default: the small preset, rounds 2, beam 2, minibatch 4, train 16 / dev 10; a small
test split), `--patience 0` so every method runs every round, and a fresh optimizer cache each, so every
call is paid. The projection counts calls at most (before format retries), the target's prompts with its
tokenizer on the task's real prompts and its replies at their `max_gen_toks` cap. Dollars: the embedded
models are free, so the run is priced at --target-price / --optimizer-price (default: GPT-3.5-Turbo as
target, GPT-4o as optimizer, litellm's prices) to show the error in dollars.

    python bench/method_cost.py
    python bench/method_cost.py --methods ape,abo --rounds 1 --beam 1 --dev 3 --train 4 --test 3 --max-gen-toks 48   # quick
"""

from __future__ import annotations

import argparse
import tempfile

import record

METHODS = "ape,apo,apo-sum,opro,promptagent,abo"
TARGET_PRICE, OPTIMIZER_PRICE = "0.5,1.5", "2.5,10"  # litellm's gpt-3.5-turbo and gpt-4o, per million tokens


def run_method(method: str, args, lm, cache_dir: str, output: str) -> dict:
    from lm_eval_abo.cost.ledger import parse_price
    from lm_eval_abo.run.optimize import OptimizeConfig, optimize

    config = OptimizeConfig(task=record.TASK, method=method, rounds=args.rounds, beam=args.beam, minibatch=args.minibatch,
                            train_limit=args.train, dev_limit=args.dev, test_limit=args.test, patience=0,
                            optimizer_cache=cache_dir, output=output, target_price=parse_price(args.target_price),
                            optimizer_price=parse_price(args.optimizer_price),
                            gen_kwargs={"max_gen_toks": args.max_gen_toks} if args.max_gen_toks else {})
    with record.stopwatch() as elapsed:
        outcome = optimize(config, out=lambda line: None, lm=lm)
    usage = outcome.artifact_data.usage
    projection = usage["projection"]
    rows = []
    for r, plan in zip(outcome.artifact_data.trace, projection["rounds"]):
        rows.append({"method": method, "round": r["round"], **side_by_side(r, plan), "candidates": len(r["candidates"]),
                     "best dev": r["best"]["dev"]})
    rows.append({"method": method, "round": "test", **side_by_side({"optimizer": zero(), "target": usage["test"]},
                                                                     projection["test"])})
    total = {"method": method, **side_by_side(usage, projection["total"]), "wall s": elapsed(),
             "test": outcome.artifact_data.scores["test"]["value"]}
    return {"rows": rows, "total": total, "stopped": usage.get("stopped")}


def zero() -> dict:
    return {"calls": 0, "prompt_tokens": 0, "completion_tokens": 0, "cost_usd": 0.0}


def side_by_side(actual: dict, projected: dict) -> dict:
    """Actual and projected calls, tokens and dollars of both sides, and actual/projected ratios of the totals."""
    out = {}
    for side, unit in (("optimizer", "calls"), ("target", "requests")):
        got, plan = actual[side], projected[side]
        got_tokens, plan_tokens = got["prompt_tokens"] + got["completion_tokens"], plan["prompt_tokens"] + plan["completion_tokens"]
        out[f"{side} {unit}"] = f"{got['calls']} ({plan['calls']})"
        out[f"{side} tokens in"] = f"{got['prompt_tokens']} ({plan['prompt_tokens']})"
        out[f"{side} tokens out"] = f"{got['completion_tokens']} ({plan['completion_tokens']})"
        out[f"{side} tokens ratio"] = round(got_tokens / plan_tokens, 3) if plan_tokens else None
    cost, plan_cost = (sum(x[side]["cost_usd"] for side in ("optimizer", "target")) for x in (actual, projected))
    out["$"] = f"{cost:.4f} ({plan_cost:.4f})"
    out["$ ratio"] = round(cost / plan_cost, 3) if plan_cost else None
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--methods", default=METHODS)
    record.add_size_flags(parser, rounds=2, test=5)
    parser.add_argument("--target-price", default=TARGET_PRICE, help="IN,OUT dollars per million tokens")
    parser.add_argument("--optimizer-price", default=OPTIMIZER_PRICE, help="IN,OUT dollars per million tokens")
    args = parser.parse_args()
    load_at_start = record.header("Cost per method per round, and the projection's error (actual (projected))")

    from lm_eval_abo.embedded.backend import EmbeddedLM
    from lm_eval_abo.embedded.models import DEFAULT_TARGET

    lm = EmbeddedLM(model=DEFAULT_TARGET)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for method in args.methods.split(","):
            results[method] = run_method(method, args, lm, f"{tmp}/{method}-cache", f"{tmp}/runs")
            print(f"{method}: {results[method]['total']['wall s']:.0f} s (load {record.load_average()})", flush=True)
    rows = [row for result in results.values() for row in result["rows"]]
    totals = [result["total"] for result in results.values()]
    print()
    print(record.table(rows))
    print("\ntotals, the test evaluation included:\n")
    print(record.table(totals))
    print(f"\nsizes: rounds {args.rounds}, beam {args.beam}, minibatch {args.minibatch}, train {args.train}, dev {args.dev}, "
          f"test {args.test}, max_gen_toks {args.max_gen_toks or 'the task'}s, patience 0, fresh optimizer cache per "
          f"method; priced at target {args.target_price}, optimizer {args.optimizer_price} $ per million tokens")
    record.save("method_cost", {"load_average_1min_at_start": load_at_start, "settings": vars(args), "rows": rows,
                                "totals": totals})


if __name__ == "__main__":
    main()
