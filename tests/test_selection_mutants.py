"""When a new prompt displaces the best (`Paired`) and when a best's gain is within noise, at their
boundaries, with p-values worked out by hand (the one-sided sign test: 0.5**k for k wins and no loss)."""

from types import SimpleNamespace

from lm_eval_abo.optimizers.selection import Paired, noise


def node(name, values):
    return SimpleNamespace(name=name, dev_per_example=dict(enumerate(values)))


def names(nodes):
    return [n.name for n in nodes]


def test_without_an_incumbent_or_with_it_leading_the_ranking_stands():
    leader, other = node("leader", [1] * 5), node("other", [0] * 5)
    assert names(Paired(0.05).order([leader, other], None, True)) == ["leader", "other"]
    assert names(Paired(0.05).order([leader, other], leader, True)) == ["leader", "other"]


def test_a_leader_displaces_the_incumbent_at_exactly_alpha():
    incumbent, leader = node("incumbent", [0] * 5 + [1] * 3), node("leader", [1] * 8)  # 5 wins: p = 1/32
    assert names(Paired(1 / 32).order([leader, incumbent], incumbent, True)) == ["leader", "incumbent"]
    assert names(Paired(0.03).order([leader, incumbent], incumbent, True)) == ["incumbent", "leader"]


def test_a_kept_incumbent_goes_first_and_the_others_keep_their_order():
    incumbent, leader, third = node("incumbent", [0, 0, 1]), node("leader", [1, 1, 1]), node("third", [0, 0, 0])
    # 2 wins: p = 1/4, not below 0.05
    assert names(Paired(0.05).order([leader, incumbent, third], incumbent, True)) == ["incumbent", "leader", "third"]
    # lower is better: the leader's lower values are its wins
    errors_incumbent, errors_leader = node("incumbent", [1] * 6), node("leader", [0] * 6)  # p = 1/64
    assert names(Paired(0.05).order([errors_leader, errors_incumbent], errors_incumbent, False)) == \
        ["leader", "incumbent"]


def test_a_gain_is_within_noise_only_above_alpha_after_the_correction():
    assert noise(0.025, 2, 0.05) == (0.05, False), "2 x 0.025 = 0.05: at alpha, not within noise"
    assert noise(0.03, 2, 0.05) == (0.06, True)
    assert noise(0.5, 3, 0.05) == (1.0, True), "capped at 1"
    assert noise(0.01, 0, 0.05) == (0.01, False), "no other candidate: no correction"
