"""`paper-table` end to end on the real embedded models, with tiny splits."""

import json

import pytest
from conftest import bin_path, run_cli

pytestmark = pytest.mark.slow
TASK = "abo_object_counting_synth"


def test_paper_table_rows_come_from_lm_eval_results(tmp_path):
    run_cli(
        bin_path("lm-eval-abo"), "paper-table", "--tasks", TASK, "--apo-methods", "ape", "--rounds", "1", "--beam", "1",
        "--train-limit", "3", "--dev-limit", "2", "--test-limit", "2", "--minibatch", "2", "--gen_kwargs", "max_gen_toks=48",
        "--output", "table", "--optimizer-cache", str(tmp_path / "optimizer-cache"), cwd=tmp_path,
    )
    table = json.loads((tmp_path / "table" / "paper_table.json").read_text())
    names = [r["row"] for r in table["rows"]]
    assert names == ["zero-shot CoT", "few-shot CoT", "best APO method", "ABO step 0", "ABO step 1", "ABO without demonstrations"]
    for row in table["rows"]:
        results = json.loads((tmp_path / row["results"]).read_text())  # relative to where the command ran
        assert row["value"] == results["results"][TASK]["exact_match,answer"] and row["n"] == 2
    optimized = [r for r in table["rows"] if "CoT" not in r["row"]]
    assert all(r["optimizer_calls"] > 0 for r in optimized)
    # the ablation's step-0 request is ABO's: answered by the optimizer cache, so it may cost no tokens
    assert all(r["tokens"] > 0 for r in optimized if r["row"].startswith(("best APO", "ABO step")))
    # the target's side: every row's own test evaluation (cache hits included), and what made its prompt
    assert all(r["target_requests"] >= 2 and r["target_tokens"] > 0 and r["cost_known"] for r in table["rows"])
    markdown = (tmp_path / "table" / "paper_table.md").read_text()
    assert "| ABO step 1 |" in markdown and "| target tokens | cost | optimizer cost | target cost |" in markdown
