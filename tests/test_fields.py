"""A prompt in lm-eval's own task fields, for a plain task of a user's own (no model needed)."""

import pytest
from conftest import write_user_task
from lm_eval.tasks import TaskManager
from lm_eval.utils import apply_template

from lm_eval_abo.artifact.prompt import Demonstration, Prompt
from lm_eval_abo.infra.errors import AboError
from lm_eval_abo.tasks import fields
from lm_eval_abo.tasks.built import Harness, requests
from lm_eval_abo.tasks.configs import load_config

HOSTILE = "Count {{ 7*7 }} {% raw %} and {{ ''.__class__ }} {# c #} a stray { brace,\r\na CR, and two newlines\n\n"


@pytest.mark.parametrize("text", [HOSTILE, "answer", "", "plain text", "{%- endraw %}", "ends with {"])
def test_literal_renders_to_the_text_itself_in_lm_evals_jinja(text):
    assert apply_template(fields.literal(text), {"answer": "FIELD", "input": "x"}) == text


@pytest.fixture
def task_dir(tmp_path):
    return write_user_task(tmp_path / "tasks")


def contexts(task_dir, prompt: Prompt, n: int = 2) -> list[str]:
    manager = TaskManager(include_path=str(task_dir), include_defaults=False)
    base = load_config(manager.task_index["my_arith"].yaml_path)
    task = manager.load([fields.task_config(base, prompt, "my_arith")])["tasks"]["my_arith"]
    return [args[0][0] for args in requests(task, Harness(), list(range(n)))]


def test_the_empty_prompt_is_the_task_exactly_as_written(task_dir):
    manager = TaskManager(include_path=str(task_dir), include_defaults=False)
    base = load_config(manager.task_index["my_arith"].yaml_path)
    assert fields.apply(base, Prompt()) == base
    plain = manager.load(["my_arith"])["tasks"]["my_arith"]
    assert contexts(task_dir, Prompt(), 3) == [a[0][0] for a in requests(plain, Harness(), [0, 1, 2])]


def test_every_part_lands_in_its_field_literally(task_dir):
    demo = Demonstration(doc={"question": "What is 1 plus {{ 1 }}?", "answer": "2"}, output="Think. So the answer is 2.")
    prompt = Prompt(instruction=HOSTILE, procedure=("Add {{ them }}.",), answer_format="End with the answer.",
                    demonstrations=(demo,), answer_prefix="Let's see {{ x }}:")
    [first, _] = contexts(task_dir, prompt)
    block = prompt.instruction_block()
    assert first.startswith(f"{block}\n\nQuestion: What is 1 plus {{{{ 1 }}}}?\nAnswer: Let's see {{{{ x }}}}: Think. So the answer is 2.")
    assert first.endswith("\nAnswer: Let's see {{ x }}:") and "Step 1: Add {{ them }}." in first


def test_user_placement_puts_the_block_before_each_question_but_not_the_demonstrations(task_dir):
    demo = Demonstration(doc={"question": "What is 1 plus 1?", "answer": "2"}, output="So the answer is 2.")
    [first, _] = contexts(task_dir, Prompt(instruction="Be exact.", placement="user", demonstrations=(demo,)))
    assert first.startswith("Add the two numbers.\n\nQuestion: What is 1 plus 1?\nAnswer: So the answer is 2.\n\nBe exact.\n\nQuestion: ")


def test_demonstrations_without_worked_answers_use_the_tasks_own_target(task_dir):
    demo = Demonstration(doc={"question": "What is 2 plus 2?", "answer": "4"}, output="")
    [first, _] = contexts(task_dir, Prompt(demonstrations=(demo,)))
    assert "Question: What is 2 plus 2?\nAnswer: 4\n\nQuestion:" in first


def test_an_instruction_cannot_go_before_a_question_written_in_code():
    with pytest.raises(AboError, match="doc_to_text is code"):
        fields.apply({"task": "t", "doc_to_text": len}, Prompt(instruction="x", placement="user"))
