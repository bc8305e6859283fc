"""Racing with a stated error rate, on scripted targets whose per-candidate accuracies are known: the truly
best candidate is dropped no more often than --race-alpha says; slices are seeded random draws that differ
between rounds; ties are broken at random, the same for the same seed; and the within-noise mark of a new
best is corrected for its being the highest of the round's candidates."""

import random
from dataclasses import dataclass

import pytest
from conftest import search
from scipy.stats import binom

from lm_eval_abo.optimizers import selection


@dataclass
class Per:
    """What the race reads of a sample: its pairing key (a one-target Sample's: the example) and its score."""

    key: int
    score: float


@dataclass
class Scored:
    """What the race reads of a score."""

    value: float
    n: int
    samples: list


def scripted(outcomes: list[list[float]], asked: list | None = None):
    """`score(candidates, indices)` over fixed per-candidate 0/1 outcomes (candidates are their positions)."""
    def score(group, indices):
        if asked is not None:
            asked.append((tuple(group), tuple(indices)))
        return [Scored(sum(outcomes[c][i] for i in indices) / len(indices), len(indices),
                       [Per(i, outcomes[c][i]) for i in indices]) for c in group]
    return score


def dropped(last: dict, n: int) -> set[int]:
    return {i for i, s in last.items() if s.n < n}


def drop_rate(accuracies: list[float], n: int, trials: int, alpha: float, seed: int) -> tuple[int, int]:
    """How often candidate 0 (true accuracy accuracies[0], the highest) is dropped, and how often the worst is,
    over `trials` simulated races with independent 0/1 outcomes."""
    rng = random.Random(seed)
    best = worst = 0
    for trial in range(trials):
        outcomes = [[float(rng.random() < p) for _ in range(n)] for p in accuracies]
        last = selection.race(list(range(len(accuracies))), scripted(outcomes), list(range(n)), 1, True, alpha,
                              random.Random(f"{seed}:{trial}"))
        out = dropped(last, n)
        best += 0 in out
        worst += len(accuracies) - 1 in out
    return best, worst


@pytest.mark.parametrize("accuracies", [[0.5] * 8, [0.6] + [0.55] * 6 + [0.1]])
def test_the_truly_best_candidate_is_dropped_no_more_often_than_the_stated_level(accuracies):
    trials, alpha = 2000, 0.05
    best, worst = drop_rate(accuracies, 40, trials, alpha, seed=7)
    # the drops of the best are at most Binomial(trials, alpha): the bound is that distribution's 99.9th percentile
    assert best <= binom.ppf(0.999, trials, alpha), (best, trials)
    if accuracies[-1] < 0.5:
        assert worst > trials / 2, "a candidate far behind is dropped most of the time: the race saves requests"


def test_a_lower_level_drops_less():
    accuracies = [0.6] + [0.35] * 5
    strict_best, strict_worst = drop_rate(accuracies, 40, 300, 0.001, seed=3)
    loose_best, loose_worst = drop_rate(accuracies, 40, 300, 0.2, seed=3)
    assert strict_worst < loose_worst and strict_best <= binom.ppf(0.999, 300, 0.001)
    assert loose_best <= binom.ppf(0.999, 300, 0.2)


def test_slices_are_seeded_random_draws_that_differ_between_rounds():
    outcomes = [[1.0] * 24, [0.0] * 24]
    asked = {}
    for round_no in (1, 2, 1):
        calls = []
        selection.Racing(0.05, seed=11).score([0, 1], scripted(outcomes, calls), list(range(24)), 1, True, round_no)
        asked.setdefault(round_no, []).append([indices for _, indices in calls])
    first, second = asked[1][0], asked[2][0]
    assert first == asked[1][1], "the same seed and round draw the same slices (a resumed run races the same)"
    assert first[0] != second[0], "another round draws another first slice"
    assert [len(s) for s in first] == selection.slices(24) and set(first[-1]) == set(range(24))
    assert first[0] != tuple(range(len(first[0]))), "not the first dev examples"
    assert all(set(a) <= set(b) for a, b in zip(first, first[1:])), "each slice holds the one before"


def test_ties_are_broken_at_random_the_same_way_for_the_same_seed():
    n = 24
    outcomes = [[1.0] * n] + [[0.0] * n] * 4  # four tied candidates, all far behind; the beam needs 3 kept
    kept = []
    for seed in range(40):
        last = selection.Racing(0.05, seed=seed).score(list(range(5)), scripted(outcomes), list(range(n)), 3, True, 1)
        again = selection.Racing(0.05, seed=seed).score(list(range(5)), scripted(outcomes), list(range(n)), 3, True, 1)
        survivors = frozenset(i for i, s in last.items() if s.n == n)
        assert survivors == frozenset(i for i, s in again.items() if s.n == n)
        assert len(survivors) == 3 and 0 in survivors
        kept.append(survivors)
    assert len(set(kept)) >= 4, "which of the tied candidates stay varies with the seed, not with proposal order"


def test_the_within_noise_mark_is_corrected_for_the_highest_of_many():
    # 6 fixed, 0 broken: one-sided sign test p = 0.5**6 = 1/64 = 0.015625
    p = 0.5**6
    assert selection.noise(p, 1, 0.05) == (pytest.approx(1 / 64), False)
    assert selection.noise(p, 3, 0.05) == (pytest.approx(3 / 64), False), "3/64 = 0.047 <= 0.05"
    assert selection.noise(p, 4, 0.05) == (pytest.approx(4 / 64), True), "4/64 = 0.0625 > 0.05"
    assert selection.noise(0.5, 8, 0.05) == (1.0, True)


def test_the_round_record_corrects_the_mark_for_the_round_s_candidates():

    three, _ = search(3, beam=2, dev=6)  # the magic prompt (6 of 6 fixed) is the highest of 3
    four, _ = search(4, beam=2, dev=6)  # ... of 4
    for state, compared in ((three, 3), (four, 4)):
        best = state.trace[0].best
        assert "magic" in state.best.prompt.instruction and best.gain_p == pytest.approx(1 / 64)
        assert best.compared == compared and best.gain_p_adjusted == pytest.approx(compared / 64)
    assert not three.trace[0].best.within_noise and four.trace[0].best.within_noise


def test_race_alpha_is_a_flag_with_a_checked_level():
    from lm_eval_abo.cli import build_parser
    from lm_eval_abo.config import OptimizeConfig
    from lm_eval_abo.infra.errors import AboError

    args = build_parser().parse_args(["optimize", "--task", "t", "--selection", "racing", "--race-alpha", "0.1"])
    assert args.race_alpha == 0.1
    assert build_parser().parse_args(["optimize", "--task", "t"]).race_alpha == selection.RACE_ALPHA == 0.05
    with pytest.raises(AboError, match="--race-alpha must be between 0 and 1, got 1.5"):
        OptimizeConfig(task="t", race_alpha=1.5).resolved()
