"""The paper-table as people read it: one row per prompt with its test score, its paired difference from
zero-shot CoT, its different and unreadable answers (a format fix is not a learned task) and what made it;
and, over several seeds, each row's spread."""

from __future__ import annotations

import statistics

from lm_eval_abo.reports.markdown import fmt, table
from lm_eval_abo.reports.run_report import answers_text, money, tokens_text


def spread(rows: list[dict]) -> list[dict]:
    """Each (task, row) over the seeds: mean, standard deviation, min and max of the test score."""
    groups: dict[tuple[str, str], list[float]] = {}
    for r in rows:
        groups.setdefault((r["task"], r["row"]), []).append(r["value"])
    return [{"task": t, "row": name, "mean": statistics.mean(v), "sd": statistics.stdev(v) if len(v) > 1 else 0.0,
             "min": min(v), "max": max(v), "values": v} for (t, name), v in groups.items()]


def _versus(r: dict) -> str:
    if "vs_baseline" not in r:
        return "-"
    # the paired test `stats.Comparison.p` uses: exact McNemar for 0/1 metrics, else the permutation test
    test_p = r.get("mcnemar_p") if r.get("mcnemar_p") is not None else r.get("permutation_p")
    shown = f", p={test_p:.3g}" if test_p is not None else ""
    return f"{r['vs_baseline']:+.3f} ({r['ci'][0]:+.3f} to {r['ci'][1]:+.3f}{shown})"


CAPS = {"max_optimizer_calls": "{:,} optimizer calls", "max_target_tokens": "{:,} target tokens", "max_cost": "${:g}"}


def _caps(caps: dict) -> str:
    return ", ".join(CAPS[name].format(value) for name, value in caps.items())


def budget_text(b: dict) -> str:
    """How the rows compare (the table's `budget`): the caps every method row had, or what was equal instead."""
    rounds = f"every method {b['rounds']} rounds, patience {b['patience'] or 'none'}"
    candidates = f", {b['candidates']} candidates a round" if b.get("candidates") else ""
    if b.get("regime") == "equal budget":
        k, apo = b["apo_searches"], _caps(b["apo_search_caps"])
        searches = f"row's {k} searches {apo} each, and its cost is that of all {k}" if k > 1 else "row is one search"
        return (f"Equal budget: every method row at most {_caps(b['row_caps'])} ({rounds}{candidates}); the best-APO "
                f"{searches}.")
    if b.get("regime") == "equal candidates":
        return (f"Equal candidates, the budget varies: {rounds}{candidates}; the best-APO row's cost is that of all its "
                "searches.")
    return (f"Equal rounds ({rounds}); the candidates a round and the budget vary by method; the best-APO row's cost "
            "is that of all its searches.")


def table_markdown(result: dict) -> str:
    header = ["task", "seed", "prompt", "score", "± stderr", "n", "vs zero-shot CoT (95% CI, p)", "answers",
              "prompt from", "optimizer calls", "optimizer tokens", "target requests", "target tokens", "cost",
              "optimizer cost", "target cost", "seconds", "detail"]
    body = [[r["task"], r["seed"], r["row"], fmt(r["value"]), fmt(r["stderr"]), r["n"], _versus(r),
             answers_text(r.get("answers", {})), r["origin"], r["optimizer_calls"], f"{r['tokens']:,}",
             r["target_requests"], tokens_text(r["usage"]["target"]), money(r["usage"]), money(r["usage"]["optimizer"]),
             money(r["usage"]["target"]), r["seconds"], r["detail"]]
            for r in result["rows"]]
    lines = [
        f"Target `{result['target']['model']}`, optimizer `{result['optimizer']}`. {budget_text(result['budget'])} Each prompt "
        "evaluated once by lm-eval on the same test examples and compared with the zero-shot CoT prompt example by "
        "example (paired bootstrap interval; p: exact McNemar for 0/1 metrics, else a paired permutation "
        "test).",
        "", *table(header, body, left=3),
    ]
    if result["spread"]:
        lines += ["", f"Over {result['seeds']} seeds:", "", *table(
            ["task", "prompt", "mean", "sd", "min", "max"],
            [[s["task"], s["row"], fmt(s["mean"]), fmt(s["sd"]), fmt(s["min"]), fmt(s["max"])] for s in result["spread"]], left=2)]
    return "\n".join(lines)
