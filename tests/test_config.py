"""How a run's settings resolve: presets, method parameters (typed, each documented by its flag), the values
each method's source publishes, and the one-line errors of --method-args."""

from dataclasses import fields

import pytest

from lm_eval_abo.config import PRESETS, OptimizeConfig
from lm_eval_abo.infra.errors import AboError
from lm_eval_abo.optimizers import METHODS, resolve
from lm_eval_abo.run.session import resolve_run


@pytest.mark.parametrize("method", sorted(METHODS))
@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_every_method_resolves_under_every_preset(method, preset):
    config, chosen, params = resolve_run(OptimizeConfig(task="abo_object_counting_synth", method=method, preset=preset))
    names = [f.name for f in fields(METHODS[method].params)]
    assert list(config.method_args) == names, "a preset changes values, never drops one"
    assert chosen is METHODS[method] and params == (chosen.paper if preset == "paper" else chosen.params)
    assert {k: getattr(config, k) for k in PRESETS[preset]} == PRESETS[preset]
    assert all(f.metadata["flag"].help for f in fields(params)), "every parameter is documented by its flag"


def test_paper_preset_uses_the_published_numbers_and_flags_still_win():
    apo, _, params = resolve_run(OptimizeConfig(task="t", method="apo", preset="paper"))
    assert (apo.rounds, apo.beam, apo.minibatch) == (6, 4, 64)
    assert (params.gradients, params.paraphrases, params.max_expansion_factor) == (4, 2, 8)  # ProTeGi's numbers
    mine, _, params = resolve_run(OptimizeConfig(task="t", method="apo", preset="paper", beam=2,
                                                 method_args={"gradients": 1}))
    assert mine.beam == 2 and (params.gradients, params.paraphrases) == (1, 2)
    assert mine.method_args["gradients"] == 1 and mine.method_args["paraphrases"] == 2


def test_resolving_twice_changes_nothing_and_the_method_sets_the_default_patience():
    once = resolve_run(OptimizeConfig(task="t", method="abo", method_args={"revisions": 1}))
    assert resolve_run(once[0]) == once
    assert once[0].patience == 1 and resolve_run(OptimizeConfig(task="t", method="ape"))[0].patience is None


@pytest.mark.parametrize("given, message", [
    ({"gradient": 1}, "unknown --method-args for apo: gradient; known: gradients, errors_per_gradient, "
                      "edits_per_gradient, paraphrases, max_expansion_factor"),
    ({"gradients": -1}, "method argument gradients must be a whole number of at least 0, got -1"),
    ({"gradients": True}, "method argument gradients must be a whole number of at least 0, got True"),
    ({"gradients": "2"}, "method argument gradients must be a whole number of at least 0, got '2'"),
])
def test_bad_method_args_are_one_line(given, message):
    with pytest.raises(AboError) as bad:
        resolve("apo", "small", given)
    assert str(bad.value) == message


def test_a_text_parameter_takes_one_of_its_choices():
    with pytest.raises(AboError, match="method argument hint must be one of fallback, always, never, got 'sometimes'"):
        resolve("abo", "small", {"hint": "sometimes"})
    assert resolve("abo", "paper", {"hint": "never"})[1].hint == "never"
    with pytest.raises(AboError, match="unknown method 'abo2'; known: ape, apo"):
        resolve("abo2", "small", {})
