"""How a run's settings resolve: presets, method defaults, the values each method's source publishes."""

import pytest

from lm_eval_abo.config import PRESETS, OptimizeConfig
from lm_eval_abo.optimizers import METHODS


@pytest.mark.parametrize("method", sorted(METHODS))
@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_every_method_resolves_under_every_preset(method, preset):
    config = OptimizeConfig(task="abo_object_counting_synth", method=method, preset=preset).resolved()
    assert set(config.method_args) == set(METHODS[method].defaults), "a preset changes values, never drops one"
    assert {k: getattr(config, k) for k in PRESETS[preset]} == PRESETS[preset]


def test_paper_preset_uses_the_published_numbers_and_flags_still_win():
    apo = OptimizeConfig(task="t", method="apo", preset="paper").resolved()
    assert (apo.rounds, apo.beam, apo.minibatch) == (6, 4, 64)
    assert apo.method_args["gradients"] == 4 and apo.method_args["paraphrases"] == 2
    mine = OptimizeConfig(task="t", method="apo", preset="paper", beam=2, method_args={"gradients": 1}).resolved()
    assert mine.beam == 2 and mine.method_args["gradients"] == 1 and mine.method_args["paraphrases"] == 2
