"""The embedded models, for real: llama.cpp in-process, through lm-eval's and litellm's interfaces."""

import hashlib

import pytest
from lm_eval.api.instance import Instance

from lm_eval_abo.embedded import models, provider, serve
from lm_eval_abo.embedded.backend import EmbeddedLM
from lm_eval_abo.infra.errors import AboError

pytestmark = pytest.mark.slow


def test_generation_and_loglikelihood_agree(embedded_target):
    context = "The days of the week are Monday, Tuesday,"
    # without the server's default repeat penalty, generation is the argmax path loglikelihood checks
    gen_kwargs = {"until": ["\n"], "max_gen_toks": 6, "repeat_penalty": 1.0}
    [text] = embedded_target.generate_until([Instance("generate_until", {}, (context, gen_kwargs), 0)], disable_tqdm=True)
    assert text.strip(), "greedy generation produced nothing"
    requests = [Instance("loglikelihood", {}, (context, text), 0), Instance("loglikelihood", {}, (context, " Banana pancake"), 1)]
    (greedy_lp, is_greedy), (other_lp, other_greedy) = embedded_target.loglikelihood(requests, disable_tqdm=True)
    assert is_greedy and not other_greedy, "the model's own greedy continuation must be flagged greedy"
    assert greedy_lp > other_lp and greedy_lp < 0
    [rolling] = embedded_target.loglikelihood_rolling([Instance("loglikelihood_rolling", {}, ("Hello there.",), 0)], disable_tqdm=True)
    assert rolling < 0


def test_the_model_is_loaded_once_per_process(embedded_target):
    assert EmbeddedLM(model=models.DEFAULT_TARGET).llm is embedded_target.llm


def test_target_has_no_chat_template(embedded_target):
    with pytest.raises(AboError, match="no chat template"):
        embedded_target.apply_chat_template([{"role": "user", "content": "hi"}])


def test_optimizer_through_litellm_in_process():
    import litellm

    provider.register_litellm_provider()
    reply = litellm.completion(
        model=f"embedded/{models.DEFAULT_OPTIMIZER}",
        messages=[{"role": "user", "content": "Write the number seven as a digit. Reply with the digit only."}],
        max_tokens=5,
        temperature=0,
    )
    assert "7" in reply.choices[0].message.content
    assert reply.usage.prompt_tokens > 0 and reply.usage.completion_tokens > 0


def test_optimizer_file_is_assembled_and_hash_checked():
    path = models.model_path(models.DEFAULT_OPTIMIZER)
    assert hashlib.sha256(path.read_bytes()).hexdigest() == models.QWEN_SHA256


def test_serve_port_clash_is_one_clear_error():
    import socket

    with socket.socket() as s:
        s.bind((serve.HOST, 0))
        s.listen()
        with pytest.raises(AboError, match=f"port {s.getsockname()[1]} on 127.0.0.1 is in use"):
            serve.start("gemma-3-270m", s.getsockname()[1])


def test_unknown_model_is_one_clear_error():
    with pytest.raises(AboError, match="unknown embedded model 'gpt-9'"):
        models.model_path("gpt-9")


def test_concurrent_first_loads_load_once_and_leave_stdout_alone():
    """Optimizer threads ask for the model at the same moment: it loads once, and printing still works
    afterwards (overlapping loads used to leave sys.stdout on /dev/null for the rest of the process)."""
    import subprocess
    import sys

    probe = (
        "from concurrent.futures import ThreadPoolExecutor; from lm_eval_abo.embedded import llama;"
        "models = list(ThreadPoolExecutor(4).map(lambda _: llama.load('qwen2.5-coder-0.5b'), range(4)));"
        "assert all(m is models[0] for m in models), 'loaded more than once'; print('stdout still works')"
    )
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=300,
                          env={**__import__("os").environ, "PYTHONUNBUFFERED": "1"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == "stdout still works"
