"""The paper's two studies as commands, on the real embedded models through real lm-eval scoring."""

import json

import pytest
from conftest import bin_path, run_cli

from lm_eval_abo.infra.stats import mcnemar_exact
from lm_eval_abo.studies.sets import same_answer

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
    assert result["measure"].startswith("TF-IDF cosine") and result["temperature"] == 1.0
    assert [r["set"] for r in result["rows"]] == ["real_a", "wrong_labels", "correct_as_errors", "other_task", "planted_cause"]
    assert result["train_examples"] == 4 and result["train_errors"] >= 2
    sets = result["error_sets"]
    assert sets["other_task"] and "navigation" not in sets["real_a"][0]["question"]
    assert not {e["question"] for e in sets["real_a"]} & {e["question"] for e in sets["real_b"]}
    assert all(not same_answer(e["target"], e["true_target"]) for e in sets["wrong_labels"])
    real = result["reflections"]["real_a"]
    assert len(real) == 2 and real[0]["text"] != real[1]["text"], "two samples at temperature 1.0, not one text twice"
    assert all(r["temperature"] == 1.0 for r in real) and real[0]["seed"] != real[1]["seed"]
    within = result["within_real_similarity"]
    assert within is not None and result["reflections"]["real_b"], "both real samples were reflected on"
    for row in result["rows"][1:]:
        sim = row["similarity_to_real"]
        if sim is None:  # a set whose every reply held no <reason>: nothing to compare, and it says so
            assert row["reflections"] == 0 and row["sensitivity"] is None and row["p_value"] is None
        else:
            assert -1e-9 <= sim <= 1.0 + 1e-9 and row["sensitivity"] == pytest.approx(within - sim)
    assert any(row["similarity_to_real"] is not None for row in result["rows"][1:]), "some set was compared"
    planted = result["planted"]
    assert planted["cause"] == "off_by_one" and planted["examples_shown"] == 2
    assert all(int(e["answer"]) == int(e["target"]) - 1 for e in sets["planted_cause"])
    assert planted["control_reflections"] == len(result["reflections"]["real_a"]) + len(result["reflections"]["real_b"])
    assert "| set |" in proc.stdout and "## Planted cause" in proc.stdout
    assert (tmp_path / "runs" / TASK / "diagnose" / "reflection.md").exists()


def test_refinement_fix_and_break_rates_beside_the_paraphrase_control(tmp_path):
    proc = diagnose(tmp_path, "refinement", "--method", "apo", "--method-args", "gradients=1,paraphrases=0")
    result = json.loads((tmp_path / "runs" / TASK / "diagnose" / "refinement.json").read_text())
    assert result["parent"]["n"] == 3 and result["usage"]["target"]["calls"] > 0 and result["sampling_temperature"] == 1.0
    kinds = [row["kind"] for row in result["rows"]]
    assert "refinement" in kinds and "control" in kinds and kinds.count("control") <= kinds.count("refinement")
    errors = result["parent"]["errors"]
    for row in result["rows"]:
        assert 0 <= row["fixed"] <= errors and 0 <= row["broken"] <= 3 - errors
        assert row["net"] == pytest.approx((row["fixed"] - row["broken"]) / 3), "net change is fixes minus breaks"
        assert row["net"] == pytest.approx(row["dev"] - result["parent"]["dev"])
        assert row["mcnemar_p"] == mcnemar_exact(row["broken"], row["fixed"])
        assert 0 <= row["changed"] <= 1 and row["check"] in (None, "new terms", "step labels")
    assert [r["origin"] for r in result["rows"] if r["kind"] == "control"] == ["paraphrase"] * kinds.count("control")
    assert {c["template"] for c in result["calls"]} >= {"apo_gradient", "apo_edit", "paraphrase"}
    assert "| control |" in proc.stdout and "McNemar p" in proc.stdout
