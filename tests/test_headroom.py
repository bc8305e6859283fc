"""The baseline's headroom, printed before the first optimizer call, against figures computed by hand."""

from conftest import make_bridge, rule_lm

from lm_eval_abo.artifact.prompt import Prompt
from lm_eval_abo.infra.stats import smallest_gain
from lm_eval_abo.run.headroom import Headroom


def test_the_smallest_gains_an_exact_paired_test_can_show():
    # two-sided McNemar with every changed example fixed: p = 2 * 0.5**k; k = 5 gives 0.0625, k = 6 0.03125
    assert smallest_gain(30) == 6 / 30
    assert smallest_gain(100) == 6 / 100
    assert smallest_gain(6) == 1.0
    assert smallest_gain(5) is None
    # one-sided sign test (--accept paired): p = 0.5**k; k = 4 gives 0.0625, k = 5 0.03125
    assert smallest_gain(10, two_sided=False) == 5 / 10
    assert smallest_gain(4, two_sided=False) is None
    # at alpha 0.01: two-sided 2 * 0.5**8 = 0.0078 (k = 7: 0.0156)
    assert smallest_gain(40, alpha=0.01) == 8 / 40


def headroom(keyword_in_prompt: bool, n_dev=10, n_test=30):
    """The rule target answers right, in the task's format, exactly when the prompt has its keyword, and
    "I do not know." otherwise (which the task's regex filter cannot read)."""
    bridge = make_bridge(rule_lm(), abo_n_dev=n_dev)
    prompt = Prompt(instruction="The magic word." if keyword_in_prompt else "Count.",
                    answer_format=bridge.default_prompt.answer_format)
    return Headroom.of(bridge, prompt, list(range(n_dev)), n_test, 0.05), bridge


def test_a_baseline_that_never_answers_in_format():
    found, bridge = headroom(False)
    assert (found.dev, found.n_dev, found.unread, found.distinct) == (0.0, 10, 10, 1)
    assert (found.dev_gain, found.test_gain) == (0.5, 0.2)
    assert found.warnings() == []
    text = found.text()
    assert "exact_match,answer = 0.000; answers the filter could not read: 10 of 10 (100%); different answers: 1" in text
    assert "dev +0.500 (n=10, one-sided sign test, as --accept paired), test +0.200 (n=30, two-sided" in text
    assert "errors: 10 of 10 (exact_match,answer: 0/1, an error is below 1)" in text
    # the ten dev golds are 4 3 4 4 5 6 5 4 2 4: "4" five times
    assert (found.commonest, found.commonest_count) == ("4", 5)
    assert "the commonest gold answer on dev, '4', is 5 of 10: giving it every time would score 0.500" in text


def test_a_saturated_baseline_is_one_warning_naming_the_flag():
    found, _ = headroom(True)
    golds = found.distinct
    assert (found.dev, found.unread) == (1.0, 0)
    assert golds > 1  # right every time: as many answers as there are gold answers
    [line] = found.warnings()
    assert line.startswith("warning: the baseline already scores 1.000 on dev") and "abo_difficulty" in line


def test_splits_too_small_to_show_a_gain_name_the_flag():
    found, _ = headroom(False, n_dev=4, n_test=30)
    assert found.dev_gain is None
    [line] = found.warnings()
    assert "4 dev examples cannot show a gain" in line and line.endswith("raise --dev-limit")
    found, _ = headroom(False, n_dev=10, n_test=5)
    [line] = found.warnings()
    assert "5 test examples cannot show a gain" in line and line.endswith("raise --test-limit")
