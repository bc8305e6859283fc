"""`lm-eval-abo check`, the CI gate: the decision rule on small results files, then real ones."""


import pytest
from conftest import bin_path, results_file, run_cli, samples, write_results, write_samples

from lm_eval_abo.cli import main
from lm_eval_abo.reports.regression import check

TASK, NAVIGATE = "abo_object_counting_synth", "abo_navigate_synth"


@pytest.mark.parametrize(("base", "new", "kwargs", "regressed"), [
    (0.50, 0.49, {}, False),  # within --max-drop 0.02
    (0.50, 0.45, {}, True),
    (0.50, 0.45, {"max_drop": 0.1}, False),
    (0.50, 0.60, {}, False),  # an improvement
])
def test_max_drop(tmp_path, base, new, kwargs, regressed):
    outcome = check(write_results(tmp_path / "new.json", {TASK: (new, 0.05)}),
                    write_results(tmp_path / "base.json", {TASK: (base, 0.05)}), **kwargs)
    assert outcome.regressed is regressed
    assert ("❌ regression" in outcome.markdown) is regressed and outcome.markdown.startswith("### lm-eval-abo check")


def test_stderr_aware_tolerates_noise_but_not_a_real_drop(tmp_path):
    base = write_results(tmp_path / "base.json", {TASK: (0.50, 0.05)})
    noisy = write_results(tmp_path / "noisy.json", {TASK: (0.42, 0.05)})  # drop 0.08 < 1.96 * 0.0707
    assert check(noisy, base).regressed and not check(noisy, base, stderr_aware=True).regressed
    real = write_results(tmp_path / "real.json", {TASK: (0.30, 0.05)})
    assert check(real, base, stderr_aware=True).regressed
    no_stderr = write_results(tmp_path / "plain.json", {TASK: (0.42, None)})  # no stderr: --max-drop alone decides
    assert check(no_stderr, base, stderr_aware=True).regressed


def test_direction_missing_and_new_tasks(tmp_path):
    base = write_results(tmp_path / "b" / "results_1.json", {TASK: (0.2, 0.01), "gone": (0.5, 0.01)}, lower_is_better=[TASK])
    new = write_results(tmp_path / "n" / "results_1.json", {TASK: (0.1, 0.01), "added": (0.5, 0.01)}, lower_is_better=[TASK])
    outcome = check(tmp_path / "n", tmp_path / "b")
    status = {c.task: c.status for c in outcome.comparisons}
    assert status == {TASK: "ok", "gone": "missing", "added": "new"} and outcome.regressed
    write_results(new.with_name("results_2.json"), {TASK: (0.3, 0.01), "gone": (0.5, 0.01)}, date=2.0)  # newer file wins
    assert {c.task: c.status for c in check(tmp_path / "n", base).comparisons} == {TASK: "regression", "gone": "ok", "added": "new"}


def test_cli_exit_codes(tmp_path, capsys):
    base = write_results(tmp_path / "base.json", {TASK: (0.5, 0.05)})
    good = write_results(tmp_path / "good.json", {TASK: (0.5, 0.05)})
    bad = write_results(tmp_path / "bad.json", {TASK: (0.1, 0.05)})
    assert main(["check", "--results", str(good), "--baseline", str(base)]) == 0
    assert main(["check", "--results", str(bad), "--baseline", str(base), "--max-drop", "0.05", "--stderr-aware"]) == 1
    assert "| abo_object_counting_synth | exact_match,answer | 0.5000 ± 0.0500 (n=100) |" in capsys.readouterr().out
    assert main(["check", "--results", str(tmp_path / "none.json"), "--baseline", str(base)]) == 2
    assert "no such file" in capsys.readouterr().err


@pytest.mark.slow
def test_check_on_real_results(real_results):
    root = real_results["root"]
    # a truly worse run of the same tasks: replies cut to one token cannot hold "the answer is X", so the task's
    # filter reads no answer and every example scores 0; the real baseline cannot be worse than that
    run_cli(bin_path("lm-eval-abo"), "run", "--model", "abo-embedded", "--tasks", f"{TASK},{NAVIGATE}", "--limit", "3",
            "--gen_kwargs", "max_gen_toks=1", "--log_samples", "--output_path", str(root / "cut"), cwd=root)
    passing = run_cli(bin_path("lm-eval-abo"), "check", "--results", "baseline", "--baseline", "cut", "--max-drop", "0",
                      cwd=root)
    assert "no regression" in passing.stdout and passing.stdout.count("✅ ok") == 2
    for task in (TASK, NAVIGATE):
        cut = samples(root / "cut", task)
        assert len(cut) == 3 and all(row["filtered_resps"][0] == "[invalid]" and row["exact_match"] == 0 for row in cut)
        kept = results_file(root / "baseline")["results"][task]["exact_match,answer"]
        row = next(line for line in passing.stdout.splitlines() if line.startswith(f"| {task} |"))
        assert f"{kept - 0.0:+.4f}" in row, "the difference from the cut run: the baseline's whole score"

    # the optimized run has no navigate results: that is a failure
    proc = run_cli(bin_path("lm-eval-abo"), "check", "--results", "runs", "--baseline", "baseline", "--max-drop", "0",
                   cwd=root, check=False)
    assert proc.returncode == 1 and f"| {NAVIGATE} |" in proc.stdout and "❌ missing" in proc.stdout
    base_score = results_file(root / "baseline")["results"][TASK]["exact_match,answer"]
    new_score = results_file(root / "runs")["results"][TASK]["exact_match,answer"]
    row = next(line for line in proc.stdout.splitlines() if line.startswith(f"| {TASK} |"))
    assert f"{new_score - base_score:+.4f}" in row and ("❌ regression" in row) == (new_score < base_score)


def test_paired_gates_on_a_significant_drop_over_the_same_examples(tmp_path):
    base = write_results(tmp_path / "b" / "results_1.json", {TASK: (0.6, 0.09)}, n=30)
    write_samples(base, TASK, [1.0] * 18 + [0.0] * 12)
    noisy = write_results(tmp_path / "n" / "results_1.json", {TASK: (0.5667, 0.09)}, n=30)  # 3 broken, 2 fixed
    write_samples(noisy, TASK, [0.0] * 3 + [1.0] * 15 + [1.0] * 2 + [0.0] * 10)
    real = write_results(tmp_path / "r" / "results_1.json", {TASK: (0.4, 0.09)}, n=30)  # 6 broken, none fixed
    write_samples(real, TASK, [0.0] * 6 + [1.0] * 12 + [0.0] * 12)
    assert check(noisy, base).regressed, "without --paired, the drop of 0.033 alone fails"
    outcome = check(noisy, base, paired=True)
    assert not outcome.regressed and "paired, n=30" in outcome.markdown
    assert check(real, base, paired=True).regressed
    unlogged = write_results(tmp_path / "u" / "results_1.json", {TASK: (0.5667, 0.09)}, n=30)
    fallback = check(unlogged, base, paired=True)
    assert fallback.regressed and "| drop |" in fallback.markdown, "no samples: --max-drop alone decides"
