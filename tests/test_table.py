"""`paper-table`: its rows on a rule-based target with a scripted optimizer server (fast), then end to end
on the real embedded models with tiny splits (slow)."""

import json
import re
from pathlib import Path

import pytest
from conftest import bin_path, logged_values, paired_by_hand, rule_lm, run_cli
from fakeserver import FakeServer, scripted

from lm_eval_abo.artifact import store
from lm_eval_abo.config import OptimizeConfig
from lm_eval_abo.cost.ledger import Ledger
from lm_eval_abo.infra.errors import AboError
from lm_eval_abo.reports.paper_table import budget_text
from lm_eval_abo.run.paper_table import paper_table, spread

TASK = "abo_object_counting_synth"


ROWS = ["zero-shot CoT", "few-shot CoT", "demonstrations only", "best APO method", "ABO step 0", "ABO step 1",
        "ABO without demonstrations", "ABO hint=fallback", "ABO hint=never", "ABO-ablation run"]
CAP = 10  # optimizer calls of each method row: ABO's run would make more; each of the two APO searches gets 5


@pytest.fixture(scope="module")
def capped_table(tmp_path_factory):
    """One table on the scripted optimizer, every method row capped at CAP optimizer calls."""
    out = tmp_path_factory.mktemp("table")
    with FakeServer(default=scripted) as server:
        config = OptimizeConfig(task=TASK, optimizer="openai/fake", optimizer_args={"api_base": server.base_url, "api_key": "x"},
                                rounds=1, patience=0, beam=1, train_limit=4, dev_limit=3, test_limit=3, minibatch=2,
                                optimizer_cache=None, output=str(out), resume=True, max_optimizer_calls=CAP)
        result = paper_table(config, [TASK], ["ape", "opro"], out=lambda line: None, lm=rule_lm())
    return out, result


def test_rows_name_their_origin_cost_and_difference_from_the_first(capped_table):
    tmp_path, result = capped_table
    rows = result["rows"]
    # ABO's round 1 ran into the cap (below): it did not complete, so there is no step-1 row
    assert [r["row"] for r in rows] == [name for name in ROWS if name != "ABO step 1"]
    by = {r["row"]: r for r in rows}
    assert by["zero-shot CoT"]["origin"] == "baseline" and "vs_baseline" not in by["zero-shot CoT"]
    zero_shot = logged_values(Path(rows[0]["results"]), TASK)
    for row in rows[1:]:  # each row against zero-shot CoT on the same 3 test documents, from lm-eval's samples logs
        difference, interval = paired_by_hand(zero_shot, logged_values(Path(row["results"]), TASK))
        assert row["vs_baseline"] == pytest.approx(difference) and row["ci"] == pytest.approx(list(interval))
    assert by["best APO method"]["vs_baseline"] == 1.0, "the APO prompt says the magic word: right on all 3"
    assert all(r["target_requests"] >= r["n"] for r in rows), "every row counts its target requests, test included"
    assert by["best APO method"]["detail"].startswith(("ape (dev", "opro (dev")) and by["best APO method"]["optimizer_calls"] > 0
    assert by["demonstrations only"]["origin"] == "baseline + verified demonstrations"
    assert "kept" in by["demonstrations only"]["detail"]
    assert by["ABO without demonstrations"]["origin"].endswith("demonstrations taken out")
    artifacts = {r["row"]: (tmp_path / TASK / "paper-table" / f"{r['row']}.yaml") for r in rows}
    assert all(path.is_file() for path in artifacts.values())
    assert "demonstrations: []" in artifacts["ABO without demonstrations"].read_text()
    # without the magic word the rule target says "I do not know.", which the task's filter cannot read
    assert by["zero-shot CoT"]["answers"]["unread"] == 3 and by["best APO method"]["answers"]["unread"] == 0
    markdown = (tmp_path / "paper_table.md").read_text()
    assert "| answers |" in markdown and "3 unreadable |" in markdown
    # fixed on all 3 test documents, broken on none: exact McNemar p = 2 * 0.5**3
    assert "| +1.000 (+1.000 to +1.000, p=0.25) |" in markdown


def test_every_method_row_keeps_to_one_budget(capped_table):
    out, result = capped_table
    rows = {r["row"]: r for r in result["rows"]}
    assert result["budget"]["regime"] == "equal budget" and result["budget"]["row_caps"] == {"max_optimizer_calls": CAP}
    searched = [r for r in result["rows"] if "CoT" not in r["row"]]
    assert all(r["caps"] == {"max_optimizer_calls": CAP} and r["optimizer_calls"] <= CAP for r in searched)
    assert rows["zero-shot CoT"]["caps"] == {} and rows["zero-shot CoT"]["optimizer_calls"] == 0
    abo = store.load(out / TASK / "abo" / "best.yaml").usage
    assert "--max-optimizer-calls 10 reached" in abo["stopped"], "the cap binds: ABO would make more calls"
    # the best-APO row: the dev-best of two searches, each with half the row's cap, at the cost of both
    ledgers = [Ledger.from_dict(store.load(out / TASK / m / "best.yaml").usage) for m in ("ape", "opro")]
    assert all(ledger.optimizer.calls <= CAP // 2 for ledger in ledgers)
    best = rows["best APO method"]
    assert best["made"]["optimizer"]["calls"] == best["optimizer_calls"] == sum(x.optimizer.calls for x in ledgers)
    assert best["tokens"] == sum(x.optimizer.tokens for x in ledgers)
    assert best["made"]["target"]["calls"] == sum(x.target.calls for x in ledgers)
    assert best["target_requests"] == best["made"]["target"]["calls"] + best["n"], "plus its own test requests"
    assert sorted(Path(r).name for r in best["runs"]) == ["ape", "opro"]
    assert "Equal budget: every method row at most 10 optimizer calls" in (out / "paper_table.md").read_text()


def test_hint_ablation_rows_are_two_abo_runs(capped_table):
    out, result = capped_table
    rows = {r["row"]: r for r in result["rows"]}
    assert rows["ABO hint=fallback"]["method_args"]["hint"] == "fallback"
    assert rows["ABO hint=never"]["method_args"]["hint"] == "never"
    assert [Path(rows[name]["runs"][0]) for name in ("ABO hint=fallback", "ABO hint=never")] == [
        out / TASK / "abo", out / "hint-never" / TASK / "abo"]
    shown = {}
    for name, run in (("fallback", out / TASK / "abo"), ("never", out / "hint-never" / TASK / "abo")):
        calls = [json.loads(line) for line in (run / "metaprompts" / "round-0.jsonl").read_text().splitlines()]
        shown[name] = sum("correct final answer is" in json.dumps(call) for call in calls)
    assert shown["fallback"] > 0 and shown["never"] == 0, "hint=never never shows the optimizer a gold answer"


def test_a_cap_that_leaves_an_apo_search_no_call_is_refused(tmp_path):
    config = OptimizeConfig(task=TASK, output=str(tmp_path), max_optimizer_calls=4)
    with pytest.raises(AboError, match="--max-optimizer-calls 4 leaves each of the 5 APO searches no call"):
        paper_table(config, [TASK], out=lambda line: None)
    assert not any(tmp_path.iterdir()), "refused before anything runs"


def test_the_header_says_how_the_rows_compare():
    rounds = {"rounds": 2, "patience": 0}
    assert budget_text({**rounds, "regime": "equal rounds"}).startswith("Equal rounds (every method 2 rounds")
    assert budget_text({**rounds, "regime": "equal candidates", "candidates": 4}).startswith(
        "Equal candidates, the budget varies: every method 2 rounds, patience none, 4 candidates a round")
    budget = {**rounds, "regime": "equal budget", "row_caps": {"max_optimizer_calls": 20, "max_cost": 0.5},
              "apo_searches": 5, "apo_search_caps": {"max_optimizer_calls": 4, "max_cost": 0.1}}
    assert budget_text(budget) == (
        "Equal budget: every method row at most 20 optimizer calls, $0.5 (every method 2 rounds, patience none); the "
        "best-APO row's 5 searches 4 optimizer calls, $0.1 each, and its cost is that of all 5.")


def test_spread_over_seeds():
    rows = [{"task": "t", "row": "a", "value": v} for v in (0.2, 0.4, 0.6)]
    [s] = spread(rows)
    assert (s["mean"], s["min"], s["max"], s["values"]) == (pytest.approx(0.4), 0.2, 0.6, [0.2, 0.4, 0.6])
    assert s["sd"] == pytest.approx(0.2)


@pytest.mark.slow
def test_paper_table_rows_come_from_lm_eval_results(tmp_path):
    run_cli(
        bin_path("lm-eval-abo"), "paper-table", "--tasks", TASK, "--apo-methods", "ape", "--rounds", "1", "--beam", "1",
        "--train-limit", "3", "--dev-limit", "2", "--test-limit", "2", "--minibatch", "2", "--gen_kwargs", "max_gen_toks=48",
        "--max-optimizer-calls", "10", "--output", "table", "--optimizer-cache", str(tmp_path / "optimizer-cache"), cwd=tmp_path,
    )
    table = json.loads((tmp_path / "table" / "paper_table.json").read_text())
    # ABO's round 0 fits in the cap (at most 1 procedure and 2 x 4 demonstrations); its round 1 may not
    assert [r["row"] for r in table["rows"] if r["row"] != "ABO step 1"] == [n for n in ROWS if n != "ABO step 1"]
    assert table["budget"]["regime"] == "equal budget"
    assert all(r["optimizer_calls"] <= 10 for r in table["rows"]) and table["rows"][2]["caps"] == {"max_optimizer_calls": 10}
    for row in table["rows"]:
        results = json.loads((tmp_path / row["results"]).read_text())  # relative to where the command ran
        assert row["value"] == results["results"][TASK]["exact_match,answer"] and row["n"] == 2
    optimized = [r for r in table["rows"] if "CoT" not in r["row"]]
    assert all(r["optimizer_calls"] > 0 for r in optimized)
    # the ablation's step-0 request is ABO's: answered by the optimizer cache, so it may cost no tokens
    assert all(r["tokens"] > 0 for r in optimized if r["row"].startswith(("best APO", "ABO step")))
    # the target's side: every row's own test evaluation (cache hits included), and what made its prompt
    assert all(r["target_requests"] >= 2 and r["cost_known"] for r in table["rows"])
    # replies from the target cache (a prompt an earlier row or run already sent) cost no tokens: the optimize
    # runs, which come first, test the zero-shot baseline; few-shot CoT is a prompt only its row sends
    assert table["rows"][1]["target_tokens"] > 0
    markdown = (tmp_path / "table" / "paper_table.md").read_text()
    # the cap may stop ABO before round 1, so its last step row is step 0 or 1
    assert re.search(r"\| ABO step [01] \|", markdown) and "| target tokens | cost | optimizer cost | target cost |" in markdown
