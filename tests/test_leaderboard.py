"""`lm-eval-abo leaderboard` on real lm-eval results files from the embedded target."""

import base64
import builtins
import csv
import html
import io
import re

import pytest
from conftest import bin_path, logged_values, paired_by_hand, results_file, run_cli

from lm_eval_abo.artifact import store
from lm_eval_abo.reports.leaderboard import PLOTS_MISSING, leaderboard

pytestmark = pytest.mark.slow
COUNTING, NAVIGATE = "abo_object_counting_synth", "abo_navigate_synth"


def test_leaderboard_joins_results_to_artifacts(real_results, tmp_path):
    root = real_results["root"]
    proc = run_cli(bin_path("lm-eval-abo"), "leaderboard", "baseline", "runs", "-o", str(tmp_path / "board"), cwd=root)
    assert "### Method x task" in proc.stdout

    rows = list(csv.DictReader(io.StringIO((tmp_path / "board" / "leaderboard.csv").read_text())))
    assert {(r["task"], r["method"]) for r in rows} == {(COUNTING, "baseline"), (NAVIGATE, "baseline"), (COUNTING, "ape")}
    assert all(r["model"] == "gemma-3-270m" and r["n"] == "3" for r in rows)

    artifact = store.load(root / "runs" / COUNTING / "ape" / "best.yaml")
    ape = next(r for r in rows if r["method"] == "ape")
    usage = artifact.usage["optimizer"]
    assert int(ape["optimizer_calls"]) == usage["calls"] >= 1
    assert int(ape["tokens"]) == usage["prompt_tokens"] + usage["completion_tokens"] > 0
    assert float(ape["optimize_seconds"]) == artifact.usage["seconds"]
    target = artifact.usage["target"]
    assert int(ape["target_requests"]) == target["calls"] and int(ape["target_tokens"]) == target["prompt_tokens"] + target["completion_tokens"] > 0
    assert float(ape["cost_usd"]) == float(ape["optimizer_cost_usd"]) + float(ape["target_cost_usd"]) == 0.0, "local models: $0"
    assert ape["dev_by_round"] == ";".join(f"{r['best']['dev']:.4f}" for r in artifact.trace) and ape["dev_by_round"].count(";") == 1
    assert float(ape["score"]) == artifact.scores["test"]["value"]
    assert float(ape["baseline"]) == artifact.scores["baseline_test"]["value"], "the baseline on the same test examples"
    run_dir = root / "runs" / COUNTING / "ape"
    difference, interval = paired_by_hand(*(logged_values(run_dir / artifact.scores[side]["results_file"], COUNTING)
                                            for side in ("baseline_test", "test")))
    assert float(ape["difference"]) == pytest.approx(difference, abs=1e-4)
    assert (float(ape["ci_low"]), float(ape["ci_high"])) == pytest.approx(interval, abs=1e-4)
    assert "vs baseline (95% CI)" in proc.stdout
    baseline = results_file(root / "baseline")
    for row in rows:
        if row["method"] == "baseline":
            assert float(row["score"]) == baseline["results"][row["task"]]["exact_match,answer"]
            assert row["optimizer_calls"] == "" and row["artifact"] == ""

    page = (tmp_path / "board" / "leaderboard.html").read_text()
    images = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert len(images) == 2 and all(base64.b64decode(png).startswith(b"\x89PNG") for png in images)
    assert "<script" not in page and not re.search(r'(src|href)="http', page), "the page is self-contained"
    markdown = (tmp_path / "board" / "leaderboard.md").read_text()
    assert markdown.count(f"| {COUNTING} | gemma-3-270m |") == 2


def test_leaderboard_without_matplotlib_still_writes_tables(real_results, tmp_path, monkeypatch):
    real_import = builtins.__import__

    def no_matplotlib(name, *args, **kwargs):
        if name.startswith("matplotlib"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_matplotlib)
    board = leaderboard([real_results["baseline"]], tmp_path / "board")
    assert PLOTS_MISSING in board.markdown and len(board.rows) == 2
    assert html.escape(PLOTS_MISSING) in (tmp_path / "board" / "leaderboard.html").read_text()
    assert (tmp_path / "board" / "leaderboard.csv").read_text().count("\n") == 3
