"""The CI gate's report and decision rule on hand-made results, each value worked out by hand: the whole
markdown, the boundaries of --max-drop, and the paired test's interval at its edges."""

import json

import pytest
from conftest import write_results, write_samples

from lm_eval_abo.reports.regression import check

METRIC = "exact_match,answer"


def test_the_report_of_a_regression_a_missing_and_a_new_task(tmp_path):
    base = write_results(tmp_path / "base.json", {"alpha": (0.5, 0.05), "gone": (0.5, None)}, n=100)
    new = write_results(tmp_path / "new.json", {"alpha": (0.3, 0.05), "added": (0.6, 0.01)}, n=90)
    outcome = check(new, base, max_drop=0.02, stderr_aware=True, paired=True)  # no samples logged: stderr decides
    # allowed drop: max(0.02, 1.96 * sqrt(0.05**2 + 0.05**2)) = 1.96 * 0.0707107 = 0.1386
    assert outcome.markdown == "\n".join([
        "### lm-eval-abo check: 2 regression(s)",
        "",
        f"New results `{new}` against baseline `{base}`; a drop larger than 0.02 and larger than 1.96 × the combined "
        "standard error (where both sides logged their samples: and significant on a paired test) fails.",
        "",
        "| task | metric | baseline | new | change | allowed drop | test | status |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
        "| added | exact_match,answer | - | 0.6000 ± 0.0100 (n=90) | - | - | - | 🆕 new |",
        "| alpha | exact_match,answer | 0.5000 ± 0.0500 (n=100) | 0.3000 ± 0.0500 (n=90) | -0.2000 | 0.1386 | "
        "stderr | ❌ regression |",
        "| gone | exact_match,answer | 0.5000 (n=100) | - | - | - | - | ❌ missing in new results |",
        "",
        "Note: the number of examples differs for alpha; compare like with like.",
    ])
    alpha = next(c for c in outcome.comparisons if c.task == "alpha")
    assert alpha.change == pytest.approx(-0.2) and alpha.allowed == pytest.approx(0.138593, abs=1e-6)
    assert (alpha.baseline.n, alpha.new.n, alpha.test) == (100, 90, "stderr")


def test_the_report_without_a_regression_or_counts(tmp_path):
    base, new = tmp_path / "base.json", tmp_path / "new.json"
    for path, value in ((base, 0.5), (new, 0.6)):
        data = json.loads(write_results(path, {"alpha": (value, 0.05)}).read_text())
        del data["n-samples"]  # a results file without counts
        path.write_text(json.dumps(data))
    assert check(new, base, max_drop=0.05).markdown == "\n".join([
        "### lm-eval-abo check: no regression",
        "",
        f"New results `{new}` against baseline `{base}`; a drop larger than 0.05 fails.",
        "",
        "| task | metric | baseline | new | change | allowed drop | test | status |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
        "| alpha | exact_match,answer | 0.5000 ± 0.0500 | 0.6000 ± 0.0500 | +0.1000 | 0.0500 | drop | ✅ ok |",
    ])


def test_a_drop_of_exactly_max_drop_passes(tmp_path):
    base = write_results(tmp_path / "b" / "results_1.json", {"alpha": (0.5, 0.01)}, n=2)
    new = write_results(tmp_path / "n" / "results_1.json", {"alpha": (0.45, 0.01)}, n=2)
    assert not check(new, base, max_drop=0.05).regressed
    write_samples(base, "alpha", [1.0, 1.0])
    write_samples(new, "alpha", [0.0, 0.0])  # a paired interval of (-1, -1): significant, so the drop decides
    assert not check(new, base, max_drop=0.05, paired=True).regressed
    assert check(new, base, max_drop=0.04, paired=True).regressed


def paired_case(tmp_path, base_values, new_values, lower_is_better=False):
    """Two examples logged on each side; the summary scores are their means."""
    scores = [sum(v) / len(v) for v in (base_values, new_values)]
    lower = ["alpha"] if lower_is_better else []
    base = write_results(tmp_path / "b" / "results_1.json", {"alpha": (scores[0], 0.1)}, n=2, lower_is_better=lower)
    new = write_results(tmp_path / "n" / "results_1.json", {"alpha": (scores[1], 0.1)}, n=2, lower_is_better=lower)
    write_samples(base, "alpha", base_values)
    write_samples(new, "alpha", new_values)
    return check(new, base, max_drop=0.0, paired=True)


def test_two_examples_are_enough_for_the_paired_test_and_an_interval_touching_zero_is_not_significant(tmp_path):
    # differences -1 and 0: a resample of two is all 0 with odds 1/4, all -1 with odds 1/4: the interval is (-1, 0)
    outcome = paired_case(tmp_path, [1.0, 1.0], [0.0, 1.0])
    [c] = outcome.comparisons
    assert (c.status, c.test) == ("ok", "paired, n=2: 95% CI -1.0000 to +0.0000")
    assert (c.task, c.baseline.n, c.new.n, c.change, c.allowed) == ("alpha", 2, 2, pytest.approx(-0.5), 0.0)
    assert "| alpha | exact_match,answer | 1.0000 ± 0.1000 (n=2) | 0.5000 ± 0.1000 (n=2) | -0.5000 | 0.0000 | " \
           "paired, n=2: 95% CI -1.0000 to +0.0000 | ✅ ok |" in outcome.markdown


def test_for_a_lower_is_better_metric_the_paired_test_looks_at_the_lower_end(tmp_path):
    worse = paired_case(tmp_path / "worse", [0.0, 0.0], [1.0, 1.0], lower_is_better=True)  # interval (1, 1)
    assert [c.status for c in worse.comparisons] == ["regression"]
    touching = paired_case(tmp_path / "touching", [0.0, 0.0], [1.0, 0.0], lower_is_better=True)  # interval (0, 1)
    assert [(c.status, c.test) for c in touching.comparisons] == [("ok", "paired, n=2: 95% CI +0.0000 to +1.0000")]
    better = paired_case(tmp_path / "better", [1.0, 1.0], [0.0, 0.0], lower_is_better=True)  # interval (-1, -1)
    assert [c.status for c in better.comparisons] == ["ok"]


def test_the_note_names_every_task_whose_counts_differ(tmp_path):
    base = write_results(tmp_path / "base.json", {"beta": (0.5, 0.05), "alpha": (0.5, 0.05)}, n=100)
    new = write_results(tmp_path / "new.json", {"beta": (0.5, 0.05), "alpha": (0.5, 0.05)}, n=90)
    assert check(new, base).markdown.endswith(
        "\n\nNote: the number of examples differs for alpha, beta; compare like with like.")
