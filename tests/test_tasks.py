import pytest
from lm_eval.tasks import TaskManager

from lm_eval_abo.artifact import store
from lm_eval_abo.artifact.prompt import Demonstration, Prompt
from lm_eval_abo.infra.errors import AboError
from lm_eval_abo.tasks import tasks_dir

TASK = "abo_object_counting_synth"
ALL_TASKS = {
    "abo_object_counting_synth", "abo_navigate_synth", "abo_bbh_object_counting", "abo_bbh_navigate",
    "abo_bbh_snarks", "abo_bigbench_question_selection", "abo_gsm8k",
}
HOSTILE = "Count {{ 7*7 }} items {% raw %} and {{ ''.__class__ }} with a stray { brace."


def build(metadata: dict, task: str = TASK, limit: int = 2):
    """Build the task as lm-eval does and return it with the prompts of its first requests."""
    manager = TaskManager(include_path=str(tasks_dir()), include_defaults=False, metadata=metadata)
    built = manager.load([task])["tasks"][task]
    built.set_fewshot_seed(1234)
    built.build_all_requests(limit=limit, rank=0, world_size=1)
    return built, [inst.arguments[0] for inst in built.instances]


def test_every_task_yaml_is_indexed():
    # lm-eval skips YAML files it cannot parse without a word, so check the index itself
    manager = TaskManager(include_path=str(tasks_dir()), include_defaults=False)
    assert ALL_TASKS <= set(manager.all_tasks)
    assert ALL_TASKS <= set(manager.match_tasks(["abo_*"]))


def test_default_prompt_is_zero_shot_chain_of_thought():
    task, contexts = build({"abo_n_test": 3})
    doc = task.test_docs()[0]
    assert task.config.num_fewshot == 0
    assert contexts[0] == (
        'Questions that involve enumerating objects and asking the model to count them.\n\nEnd your answer with '
        f'"So the answer is N." where N is a number.\n\nQ: {doc["input"]}\nA: Let\'s think step by step.'
    )
    assert task.dump_config()["metadata"]["abo"]["method"] == "baseline"


def test_artifact_prompt_with_demonstrations_as_few_shot_examples(tmp_path):
    # the demonstration already starts with the answer prefix, which lm-eval must not repeat
    demo_doc = {"id": "d1", "input": "I have a cat. How many animals do I have?", "target": "1"}
    prompt = Prompt(
        instruction="Follow the steps exactly.",
        procedure=("List the items of the asked kind.", "Add their counts."),
        demonstrations=(Demonstration(doc=demo_doc, output="Step 1: a cat (1).\nStep 2: 1. So the answer is 1."),),
        answer_prefix="Step 1:",
    )
    path = store.save(store.Artifact(task=TASK, method="abo", prompt=prompt), tmp_path / "best.yaml")
    task, contexts = build({"abo_prompt": str(path), "abo_n_test": 3})
    doc = task.test_docs()[0]
    assert task.config.num_fewshot == 1
    assert contexts[0] == (
        "Follow the steps exactly.\n\nStep 1: List the items of the asked kind.\nStep 2: Add their counts.\n\n"
        "Q: I have a cat. How many animals do I have?\nA: Step 1: a cat (1).\nStep 2: 1. So the answer is 1.\n\n"
        f"Q: {doc['input']}\nA: Step 1:"
    )
    record = task.dump_config()["metadata"]["abo"]
    assert record == {
        "source": str(path), "method": "abo", "artifact_sha256": store.file_sha256(path), "prompt_sha256": prompt.sha256(),
    }


def test_user_placement_puts_the_instruction_before_the_question_only():
    demo = Demonstration(doc={"id": "d", "input": "I have a dog. How many animals do I have?", "target": "1"}, output="1")
    prompt = Prompt(instruction="Answer with a number.", placement="user", demonstrations=(demo,))
    task, contexts = build({"abo_prompt": prompt.to_dict(), "abo_n_test": 2})
    doc = task.test_docs()[0]
    assert contexts[0] == f"Q: {demo.doc['input']}\nA: 1\n\nAnswer with a number.\n\nQ: {doc['input']}\nA:"
    metadata = task.dump_config()["metadata"]
    assert metadata["abo_prompt"] == prompt.sha256() and metadata["abo"]["source"] == "inline"


def test_template_like_text_reaches_the_model_literally():
    demo = Demonstration(doc={"id": "d", "input": "I have {{ 1+1 }} {% raw %} cats.", "target": "2"}, output=HOSTILE)
    prefix = "Then {{ x }} {% if %}:"
    prompt = Prompt(instruction=HOSTILE, procedure=(HOSTILE,), demonstrations=(demo,), answer_prefix=prefix)
    _, contexts = build({"abo_prompt": prompt.to_dict(), "abo_n_test": 2})
    assert contexts[0].count(HOSTILE) == 3  # instruction, step, demonstration
    assert contexts[0].count(prefix) == 2  # before the demonstration's answer and the question's
    assert "I have {{ 1+1 }} {% raw %} cats." in contexts[0]
    assert "49" not in contexts[0] and "<class" not in contexts[0]


def test_bad_artifacts_fail_with_one_line_naming_task_file_and_problem(tmp_path):
    wrong = store.save(store.Artifact(task="abo_navigate_synth", method="apo", prompt=Prompt()), tmp_path / "nav.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("schema_version: 1\ntask: [")
    for path, problem in [(wrong, "is for task 'abo_navigate_synth'"), (broken, "not valid YAML"), (tmp_path / "none.yaml", "no such file")]:
        with pytest.raises(AboError) as err:
            build({"abo_prompt": str(path)})
        assert str(err.value).startswith(f"{TASK}: {path}") and problem in str(err.value)


def test_bbh_task_reads_a_local_copy(bbh_dir):
    task, contexts = build({"abo_data_dir": str(bbh_dir)}, task="abo_bbh_snarks")
    assert len(task.test_docs()) == 178 - 50 - 50 and "Which statement is sarcastic?" in contexts[0]
