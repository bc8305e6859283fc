"""Chat targets: the answer prefix (lm-eval's `gen_prefix`) stays open for the model to continue, byte for
byte, under the embedded backend's chat template, for an abo task and for an exported ABO task."""

import pytest
from lm_eval.tasks import TaskManager

from lm_eval_abo.artifact.prompt import Demonstration, Prompt
from lm_eval_abo.embedded.backend import EmbeddedLM
from lm_eval_abo.embedded.chat import continued
from lm_eval_abo.infra.errors import AboError

CHATML = "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nQ: 2+2?<|im_end|>\n<|im_start|>assistant\n"


def test_the_final_message_is_left_open():
    rendered = CHATML + "Step 1:<|im_end|>\n"
    assert continued(rendered, "Step 1:") == CHATML + "Step 1:"


def test_white_space_the_template_trimmed_is_not_invented():
    rendered = CHATML + "Let's think step by step.<|im_end|>\n"
    assert continued(rendered, "Let's think step by step. ") == CHATML + "Let's think step by step."
    assert continued(CHATML + "A: <|im_end|>\n", "A: ") == CHATML + "A: "


def test_the_last_occurrence_is_the_final_message():
    rendered = "<|im_start|>user\nStep 1:<|im_end|>\n<|im_start|>assistant\nStep 1:<|im_end|>\n"
    assert continued(rendered, "Step 1:") == "<|im_start|>user\nStep 1:<|im_end|>\n<|im_start|>assistant\nStep 1:"


def test_a_template_that_drops_the_message_is_one_error():
    with pytest.raises(AboError, match="does not show the final assistant message"):
        continued(CHATML, "Step 1:")


@pytest.fixture(scope="module")
def qwen():
    return EmbeddedLM(model="qwen2.5-coder-0.5b")


def chat_requests(task, lm, multiturn: bool = False) -> list[str]:
    """The prompts lm-eval sends a chat target for a task's first test documents, rendered by `lm`."""
    task.set_config("num_fewshot", task.get_config("num_fewshot") or 0)
    task.build_all_requests(limit=2, rank=0, world_size=1, apply_chat_template=True, fewshot_as_multiturn=multiturn,
                            chat_template=lm.apply_chat_template)
    return [inst.args[0] for inst in task.instances]


@pytest.mark.slow
def test_an_abo_task_ends_on_the_open_assistant_turn(qwen):
    from lm_eval_abo.tasks import tasks_dir

    manager = TaskManager(include_path=str(tasks_dir()), include_defaults=False, metadata={"abo_n_test": 3})
    task = manager.load(["abo_object_counting_synth"])["tasks"]["abo_object_counting_synth"]
    for prompt in chat_requests(task, qwen):
        assert prompt.endswith("<|im_start|>assistant\nLet's think step by step."), prompt[-120:]
        assert prompt.count("<|im_start|>assistant") == 1
        assert prompt.startswith("<|im_start|>system\nQuestions that involve enumerating objects")


@pytest.mark.slow
def test_an_exported_abo_task_ends_on_the_open_step_1(qwen, tmp_path):
    from lm_eval_abo.config import OptimizeConfig
    from lm_eval_abo.run.session import plan_session
    from lm_eval_abo.tasks import export

    session = plan_session(OptimizeConfig(task="abo_object_counting_synth", metadata={"abo_n_test": 3}).resolved())
    doc = session.bridge.docs("train")[0]
    prompt = Prompt(instruction="Follow the steps.", procedure=("List the objects.", "Count them."),
                    answer_format='End with "So the answer is N."', answer_prefix="Step 1:",
                    demonstrations=(Demonstration(doc=dict(doc), output="Step 1: a, b\nStep 2: 2. So the answer is 2."),))
    export.write(session.bridge, prompt, tmp_path, "counting_abo", {"task": "abo_object_counting_synth", "method": "abo"})
    manager = TaskManager(include_path=str(tmp_path), include_defaults=False)
    for sent in chat_requests(manager.load(["counting_abo"])["tasks"]["counting_abo"], qwen):
        assert sent.endswith("<|im_start|>assistant\nStep 1:"), sent[-120:]
        # lm-eval's default: the demonstration inside the user turn, before the question
        assert sent.count("<|im_start|>assistant") == 1 and "Step 2: 2. So the answer is 2.\n\nQ:" in sent
    for sent in chat_requests(manager.load(["counting_abo"])["tasks"]["counting_abo"], qwen, multiturn=True):
        assert sent.endswith("<|im_start|>assistant\nStep 1:"), sent[-120:]
        # --fewshot_as_multiturn: the demonstration is a closed assistant turn before the question's open one
        assert sent.count("<|im_start|>assistant") == 2 and "Step 2: 2. So the answer is 2.<|im_end|>" in sent


@pytest.mark.slow
def test_the_server_continues_a_final_assistant_message(qwen):
    """Behind `lm-eval-abo serve` (what the stock CLI's local-chat-completions reaches) the prompt the model
    reads is the open one, token for token: the server's own prompt count equals it, not the closed turn's."""
    import json
    import urllib.request

    from lm_eval_abo.embedded import serve

    chat = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Q: 2+2?"},
            {"role": "assistant", "content": "Step 1:"}]
    open_turn = qwen.apply_chat_template(chat, add_generation_prompt=False)
    assert open_turn.endswith("<|im_start|>assistant\nStep 1:")
    closed = open_turn + "<|im_end|>\n<|im_start|>assistant\n"
    server = serve.start("qwen2.5-coder-0.5b")
    try:
        body = json.dumps({"model": server.model, "messages": chat, "max_tokens": 8, "temperature": 0}).encode()
        request = urllib.request.Request(f"{server.base_url}/chat/completions", body, {"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=120) as reply:
            used = json.load(reply)["usage"]["prompt_tokens"]
    finally:
        serve.stop(server)
    assert used == len(qwen.tok_encode(open_turn, add_special_tokens=False)) != len(qwen.tok_encode(closed))
