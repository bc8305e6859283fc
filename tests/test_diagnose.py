"""The paper's two studies as commands, on the real embedded models through real lm-eval scoring."""

import json

import pytest
from conftest import bin_path, run_cli

pytestmark = pytest.mark.slow
TASK = "abo_object_counting_synth"
TINY = ["--train-limit", "4", "--dev-limit", "3", "--minibatch", "3", "--gen_kwargs", "max_gen_toks=48"]


def diagnose(tmp_path, study, *extra):
    return run_cli(
        bin_path("lm-eval-abo"), "diagnose", study, "--task", TASK, *TINY, "--output", "runs",
        "--optimizer-cache", str(tmp_path / "optimizer-cache"), *extra, cwd=tmp_path,
    )


def test_reflection_sensitivity(tmp_path):
    proc = diagnose(tmp_path, "reflection", "--samples", "2", "--errors", "2")
    result = json.loads((tmp_path / "runs" / TASK / "diagnose" / "reflection.json").read_text())
    assert result["measure"].startswith("TF-IDF cosine")
    assert [r["perturbation"] for r in result["rows"]] == ["shuffled_labels", "correct_as_errors", "other_task"]
    assert result["train_examples"] == 4 and result["train_errors"] >= 1
    assert result["error_sets"]["other_task"] and "navigation" not in result["error_sets"]["real"][0]["question"]
    assert len(result["reflections"]["real"]) >= 1, "the optimizer wrote reflections on the real errors"
    for row in result["rows"]:
        sim = row["similarity_to_real"]
        assert sim is None or 0.0 <= sim <= 1.0 + 1e-9
        if sim is not None and result["within_real_similarity"] is not None:
            assert row["sensitivity"] == pytest.approx(result["within_real_similarity"] - sim)
    assert "| perturbation |" in proc.stdout and (tmp_path / "runs" / TASK / "diagnose" / "reflection.md").exists()


def test_refinement_fix_and_break_rates(tmp_path):
    diagnose(tmp_path, "refinement", "--method", "apo", "--method-args", "gradients=1,paraphrases=0")
    result = json.loads((tmp_path / "runs" / TASK / "diagnose" / "refinement.json").read_text())
    assert result["dev_n"] == 3 and result["rows"] and result["usage"]["target"]["calls"] > 0
    for row in result["rows"]:
        assert 0 <= row["fixed"] <= result["old_errors"] and 0 <= row["broken"] <= 3 - result["old_errors"]
        assert row["net"] == pytest.approx(row["dev"] - result["old_dev"])
        assert row["net"] == pytest.approx((row["fixed"] - row["broken"]) / 3), "net change is fixes minus breaks"
