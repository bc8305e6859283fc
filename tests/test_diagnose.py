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


def test_refinement_beside_resampling_around_it_and_from_the_parent(tmp_path):
    proc = diagnose(tmp_path, "refinement", "--method", "apo", "--method-args", "gradients=1,paraphrases=1")
    result = json.loads((tmp_path / "runs" / TASK / "diagnose" / "refinement.json").read_text())
    assert result["parent"]["n"] == 3 and result["usage"]["target"]["calls"] > 0 and result["sampling_temperature"] == 1.0
    rows = {kind: [r for r in result["rows"] if r["kind"] == kind] for kind in ("refinement", "around_refinement", "from_parent")}
    assert len(rows) == 3 and len(result["rows"]) == sum(map(len, rows.values()))
    refinements = {r["key"] for r in rows["refinement"]}
    assert refinements and all(r["origin"] == "edit" for r in rows["refinement"]), "APO's paraphrases are never refinements"
    assert all(r["origin"] == "paraphrase" and r["source"] in refinements for r in rows["around_refinement"])
    assert len({r["source"] for r in rows["around_refinement"]}) == len(rows["around_refinement"]) <= len(refinements)
    studied = {r["source"] for r in rows["refinement"]}
    assert len(studied) == 1 and all(r["origin"] == "paraphrase" and r["source"] in studied for r in rows["from_parent"])
    assert len(rows["from_parent"]) <= len(refinements)
    # gradients=1, paraphrases=1: APO also wrote a paraphrase of its edit and of the parent, left out
    assert set(result["left_out"]) == {"paraphrases of the parent", "paraphrases of refinements"}
    errors = result["parent"]["errors"]
    for row in result["rows"]:
        assert 0 <= row["fixed"] <= errors and 0 <= row["broken"] <= 3 - errors
        assert row["net"] == pytest.approx((row["fixed"] - row["broken"]) / 3), "net change is fixes minus breaks"
        assert row["net"] == pytest.approx(row["dev"] - result["parent"]["dev"])
        assert row["vs_parent"]["difference"] == pytest.approx(row["net"]), "a 0/1 metric: the difference is the net change"
        assert row["mcnemar_p"] == mcnemar_exact(row["broken"], row["fixed"]) == row["vs_parent"]["mcnemar_p"]
        assert 0 <= row["changed"] <= 1 and row["check"] in (None, "new terms", "step labels")
    for row in rows["around_refinement"]:
        source = next(r for r in rows["refinement"] if r["key"] == row["source"])
        assert row["refinement_vs_this"]["difference"] == pytest.approx(source["dev"] - row["dev"])
    for kind, found in result["kinds"].items():
        members = rows[kind]
        assert found["members"] == len(members) and found["dev"] == pytest.approx(sum(r["dev"] for r in members) / len(members))
        if kind != "refinement":
            assert found["refinements_vs_control"]["difference"] == pytest.approx(result["kinds"]["refinement"]["dev"] - found["dev"])
    assert {c["template"] for c in result["calls"]} >= {"apo_gradient", "apo_edit", "paraphrase"}
    assert "| refinement |" in proc.stdout and "McNemar p" in proc.stdout and "refinements - control" in proc.stdout
