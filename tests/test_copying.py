"""The copy check on the package's own synthetic training questions: what a task's questions share is the
task's wording, what some of them hold alone is theirs."""

import pytest

from lm_eval_abo.optimizers.copying import Examples
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
