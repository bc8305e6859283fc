"""The copy check on the package's own synthetic training questions: what a task's questions share is the
task's wording, what some of them hold alone is theirs."""

import pytest

from lm_eval_abo.optimizers.copying import Examples, particular, runs
from lm_eval_abo.tasks import synthetic

NAVIGATE = "Given a series of navigation instructions, determine whether one would end up back at the starting point."


@pytest.fixture(scope="module")
def navigate():
    questions = [d["input"] for d in synthetic.generate_split("navigate", "train", 16, 1234, 2)]
    return questions, Examples(questions, NAVIGATE)


def test_the_tasks_own_question_wording_is_not_copying(navigate):
    questions, examples = navigate
    assert all(synthetic.NAVIGATE_QUESTION in q for q in questions)
    procedure = ["Start at the starting point.", "Keep track of your position after each step.",
                 "If you return to the starting point, the answer is Yes.", "If not, repeat steps 2-3, then answer No."]
    assert examples.copied("\n".join(procedure)) is None


def test_a_run_of_one_questions_words_is_copying(navigate):
    questions, examples = navigate
    moves = questions[0].removeprefix(synthetic.NAVIGATE_QUESTION).split("Options")[0]  # this question's own walk
    assert examples.copied("Follow the steps:" + moves).startswith("repeats \"")


def test_numbers_of_the_questions_count_but_references_to_steps_do_not():
    questions = [f"I have {n} apples and {n + 4} pears. How many fruits do I have?" for n in range(1, 9)]
    examples = Examples(questions, "Count the objects.")
    assert examples.copied("Go back to steps 3-7 and step 11.") is None
    assert examples.copied("Add 3 and 7.") == "uses the training questions' numbers 3, 7"


def test_with_one_training_question_everything_in_it_is_its_own():
    examples = Examples(["I have a banana, a plum, a goat and a carrot."], "Count the objects.")
    assert examples.copied("Count the banana, the plum and the carrot.") == "names the training questions' banana, plum, carrot"


def test_runs_are_every_six_words_in_a_row():
    assert runs(list("abcdefg")) == [tuple("abcdef"), tuple("bcdefg")]
    assert runs(list("abcde")) == []


def test_particular_means_in_fewer_than_the_share_of_questions_or_in_only_one():
    per_question = [{"half", "all"}, {"half", "all"}, {"once", "all"}, {"all", "allowed"}]
    assert particular(per_question, {"allowed"}, 0.5) == {"once"}, "'half' is in exactly half: not fewer"
    assert particular([{"two"}, {"two"}], set(), 0.25) == set()
    assert particular([{"one"}, {"two"}], set(), 0.25) == {"one", "two"}, "in only one question"


def test_the_allowed_text_is_read_without_case_and_its_words_are_not_particular():
    examples = Examples(["apples and pears", "grapes and lemons"], "Name the APPLES")
    assert examples.particular == {"pears", "grapes", "lemons"}


def test_the_reason_names_the_copied_run_and_at_most_eight_words_or_numbers():
    examples = Examples(["alpha bravo charlie delta echo foxtrot golf", "hotel india juliet kilo lima mike november",
                         "oscar papa quebec romeo sierra tango uniform", "12 13 14 15 16 17 18 19 20 21"], "")
    assert examples.copied("then bravo charlie delta echo foxtrot golf") == \
        'repeats "bravo charlie delta echo foxtrot golf" from a training question'
    assert examples.copied("alpha, hotel, oscar, india, papa, juliet, quebec, kilo, romeo") == \
        "names the training questions' alpha, hotel, oscar, india, papa, juliet, quebec, kilo"
    assert examples.copied("count 21, 20, 19, 18, 17, 16, 15, 14, 13") == \
        "uses the training questions' numbers 21, 20, 19, 18, 17, 16, 15, 14"
