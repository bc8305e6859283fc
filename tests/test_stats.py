"""Paired statistics against known values and simulated data; racing and paired acceptance in the search
loop on a rule-based target (scored through lm-eval)."""

import random

import pytest
from conftest import search
from scipy.stats import binomtest

from lm_eval_abo.infra import stats
from lm_eval_abo.optimizers.selection import slices
from lm_eval_abo.reports.run_report import one_answer_text
from lm_eval_abo.run.evaluation import answer_counts


def test_mcnemar_exact_on_a_hand_made_table():
    # 20 examples: 8 right under both, 1 right under a only, 9 right under b only, 2 wrong under both
    assert stats.mcnemar_exact(1, 9) == pytest.approx(22 / 1024) == pytest.approx(binomtest(9, 10, 0.5).pvalue)
    assert stats.mcnemar_exact(9, 1) == stats.mcnemar_exact(1, 9)
    assert stats.mcnemar_exact(0, 0) == 1.0 and stats.mcnemar_exact(3, 3) == 1.0
    assert stats.mcnemar_exact(0, 5) == pytest.approx(2 / 32)


def test_the_sign_test_is_the_one_sided_mcnemar_test_for_0_1_metrics():
    a = [1] * 8 + [1] + [0] * 9 + [0, 0]
    b = [1] * 8 + [0] + [1] * 9 + [0, 0]
    assert stats.sign_test(a, b) == pytest.approx(binomtest(9, 10, 0.5, alternative="greater").pvalue)
    assert stats.sign_test(b, a) == pytest.approx(binomtest(1, 10, 0.5, alternative="greater").pvalue)


def test_the_paired_bootstrap_interval_covers_the_true_difference_95_percent_of_the_time():
    rng = random.Random(0)
    true_difference, covered, trials = 0.1, 0, 300
    for trial in range(trials):
        a, b = [], []
        for _ in range(120):  # paired 0/1 outcomes: b fixes some of a's errors and breaks a few of its successes
            x = rng.random() < 0.5
            y = (rng.random() < 0.25) if not x else (rng.random() > 0.05)
            a.append(float(x))
            b.append(float(y))
        # the true difference of these draws: P(y) - P(x) = 0.5*0.25 + 0.5*0.95 - 0.5 = 0.1
        lo, hi = stats.paired_interval(a, b, seed=trial, iterations=2000)
        covered += lo <= true_difference <= hi
    assert 0.91 <= covered / trials <= 0.98, covered / trials


def test_compare_reports_fixed_broken_and_a_verdict():
    a = {i: 0.0 for i in range(30)} | {i: 1.0 for i in range(10)}
    b = {i: 0.0 for i in range(30)} | {i: 1.0 for i in range(2, 25)}
    correct = lambda d: {i: v >= 1 for i, v in d.items()}  # noqa: E731
    c = stats.compare(a, b, correct(a), correct(b))
    assert c.fixed == list(range(10, 25)) and c.broken == [0, 1] and c.n == 30
    assert c.difference == pytest.approx(13 / 30) and c.mcnemar_p == pytest.approx(stats.mcnemar_exact(2, 15))
    assert c.significant and c.verdict().startswith("+0.433 (95% CI +") and "better than the baseline" in c.verdict()
    same = stats.compare(a, a, correct(a), correct(a))
    assert not same.significant and same.verdict().startswith("no difference from the baseline that the test set can show (n=30")

    # few changed examples: the interval clears 0, McNemar does not, and the line says so with the p
    none_right, four_right = {i: 0.0 for i in range(10)}, {i: float(i < 4) for i in range(10)}
    few = stats.compare(none_right, four_right, correct(none_right), correct(four_right))
    assert few.interval[0] > 0 and few.mcnemar_p == pytest.approx(0.125) and not few.significant
    assert few.verdict() == f"no difference from the baseline that the test set can show (n=10, +0.400, " \
                            f"95% CI {few.interval[0]:+.3f} to {few.interval[1]:+.3f}, McNemar p=0.125)"


def test_a_prompt_giving_one_answer_to_every_test_document_is_named():
    assert answer_counts({0: "Yes", 1: "Yes", 2: "Yes"}) == {"distinct_answers": 1, "unread": 0, "one_answer": "Yes"}
    assert answer_counts({0: "Yes", 1: "No"}, {1}) == {"distinct_answers": 2, "unread": 1}, "two answers"
    assert answer_counts({0: "Yes"}) == {"distinct_answers": 1, "unread": 0}, "one document"
    assert one_answer_text({"one_answer": "Yes", "n": 100}) == ("The best prompt gave one answer, 'Yes', to all 100 test "
                                                               "examples: its score is that answer's share of the gold "
                                                               "answers, not the task solved.")


def test_race_slices_grow_to_the_whole_dev_split():
    assert slices(10) == [3, 6, 10] and slices(50) == [7, 14, 28, 50] and slices(3) == [3] and slices(2) == [2]


def test_racing_drops_the_dominated_candidates_and_scores_the_survivors_on_all_of_dev():
    # 6 candidates, slices 6, 12, 24 of 48: a plain prompt is dropped once it is behind on a one-sided sign test at
    # 0.05 / (5 * 3) = 0.0033: not after 6 examples (p = 1/64), after 12 (p = 1/4096)
    full, full_requests = search(6, beam=2, dev=48)
    raced, race_requests = search(6, beam=2, dev=48, racing=True)
    assert full_requests == 7 * 48 and race_requests == 48 + 6 * 12 + 2 * (48 - 12)
    raced_out = [n for n in raced.nodes if "raced_out" in n.candidate.notes]
    assert len(raced_out) == 4 and all(n.dev == 0.0 and n.dev_n == 12 for n in raced_out), "only the plain prompts lose"
    assert all(raced.node(k).dev_n == 48 for k in raced.beam), "the beam rests on all of dev"
    assert raced.best.prompt.instruction == full.best.prompt.instruction and "magic" in raced.best.prompt.instruction


def test_paired_acceptance_keeps_the_incumbent_unless_the_gain_is_significant():
    from lm_eval_abo.artifact.prompt import Prompt
    from lm_eval_abo.optimizers import selection
    from lm_eval_abo.optimizers.base import Candidate, Node

    def node(name, per):
        return Node(Candidate(Prompt(instruction=name), "x"), 0, sum(per) / len(per), None, len(per), dict(enumerate(per)))

    incumbent = node("old", [1, 0, 0, 0, 0, 0, 0, 0, 0, 0])
    slight = node("slight", [1, 1, 1, 0, 0, 0, 0, 0, 0, 0])  # 2 fixed, 0 broken: p = 0.25
    clear = node("clear", [1, 1, 1, 1, 1, 1, 0, 0, 0, 0])  # 5 fixed, 0 broken: p = 1/32
    assert selection.Paired(0.05).order([slight, incumbent], incumbent, True)[0] is incumbent
    assert selection.ByScore().order([slight, incumbent], incumbent, True)[0] is slight
    assert selection.Paired(0.05).order([clear, incumbent], incumbent, True)[0] is clear
    assert selection.Paired(0.01).order([clear, incumbent], incumbent, True)[0] is incumbent, "1/32 is not below 0.01"
    assert selection.gain_p(incumbent.dev_per_example, slight.dev_per_example, True) == pytest.approx(0.25)


def test_the_round_record_marks_a_best_whose_gain_is_within_noise():
    scored, _ = search(3, beam=2, dev=4)
    best = scored.trace[0].best
    # the magic prompt fixes all 4 dev examples of the baseline: p = 1/16 > 0.05, kept by `score`, marked as noise
    assert "magic" in scored.best.prompt.instruction and best.gain_p == pytest.approx(1 / 16) and best.within_noise
    kept, _ = search(3, beam=2, dev=4, paired=True)
    assert kept.best.candidate.origin == "baseline", "the paired rule keeps the baseline: 4 of 4 is not enough"
    significant, _ = search(3, beam=2, dev=6, paired=True)
    assert "magic" in significant.best.prompt.instruction, "6 of 6 is: p = 1/64"
