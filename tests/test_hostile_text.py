"""Hostile text (template syntax, Python attribute walks, stray braces) written by the optimizer or the
target, or found in the data, reaches the target model and the meta-prompts literally: through the
search loop, lm-eval's own jinja rendering (plain and chat template), the artifact, lm-eval's results,
and once through the real embedded model and the stock `lm_eval` CLI."""

import http.server
import json
import re
import threading
import urllib.request

import jinja2
import pytest
from conftest import FakeLM, bin_path, local_completions_args, rule_answer, run_cli, samples
from fakeserver import FakeServer, reply
from reliability import Section

from lm_eval_abo.artifact import store
from lm_eval_abo.artifact.prompt import Demonstration, Prompt
from lm_eval_abo.tasks import tasks_dir

TASK = "abo_object_counting_synth"
# rendered, these would read 666666, <class 'str'>, or fail to parse
HOSTILE = "Count {{ 6*111111 }} {% raw %} {{ ''.__class__ }} {# c #} {% if x %} a stray { and }} brace."
EVALUATED = ("666666", "<class", "{% endraw %}")
SECTION = Section("hostile-text", "Hostile text (tests/test_hostile_text.py)", [
    "optimizer reply", "target output", "chat template", "stock CLI, real model"])


table = SECTION.fixture()


def literal(texts: list[str]) -> bool:
    return bool(texts) and all(HOSTILE in t and not any(e in t for e in EVALUATED) for t in texts)


CHAT = ("{% for m in messages %}<|{{ m.role }}|>\n{{ m.content }}\n{% endfor %}"
        "{% if add_generation_prompt %}<|assistant|>\n{% endif %}")


def hostile_lm():
    """The rule-based target (right when its prompt says "magic"), writing template syntax in every
    answer and rendering chat turns with a jinja2 chat template, as Hugging Face tokenizers do."""

    class ChatTarget(FakeLM):
        tokenizer_name = "hostile-chat"

        def chat_template(self, chat_template=False):
            return CHAT

        def apply_chat_template(self, chat_history, add_generation_prompt=True):
            template = jinja2.Environment().from_string(CHAT)
            return template.render(messages=chat_history, add_generation_prompt=add_generation_prompt)

    return ChatTarget(rule_answer(say=HOSTILE))


def optimizer_reply(request):
    """Initial instruction: hostile text. Reflection: hostile text. Edit: hostile text plus the word
    the target needs, so the edit wins and is evaluated on test."""
    text = request.text
    if "I gave a friend" in text:
        return reply(f"<prompt>{HOSTILE}</prompt>")
    if "<reason>" in text:
        return reply(f"<reason>{HOSTILE}</reason>")
    return reply(f"<prompt>{HOSTILE} Say magic.</prompt>")


def test_optimizer_and_target_text_with_template_syntax_stays_literal_end_to_end(tmp_path):
    from lm_eval_abo.run.optimize import OptimizeConfig, optimize

    target = hostile_lm()
    with FakeServer(optimizer_reply) as server:
        config = OptimizeConfig(
            task=TASK, method="apo", optimizer="openai/fake",
            optimizer_args={"api_base": server.base_url, "api_key": "x"},
            rounds=1, beam=2, train_limit=4, dev_limit=3, test_limit=3, minibatch=2, optimizer_cache=None,
            method_args={"gradients": 1, "errors_per_gradient": 2, "paraphrases": 0}, output=str(tmp_path),
            metadata={"abo_n_train": 8, "abo_n_dev": 4, "abo_n_test": 4},
        )
        outcome = optimize(config, out=lambda line: None, lm=target)
    meta_prompts = [r.text for r in server.requests]
    reflections = [t for t in meta_prompts if "<reason>" in t]
    edits = [t for t in meta_prompts if "improved instruction" in t]
    # the initial candidate's hostile instruction and the target's hostile answers, in later meta-prompts
    assert literal(reflections) and literal(edits) and all(t.count(HOSTILE) >= 2 for t in reflections)
    sent = [p for p in target.seen if p.startswith(HOSTILE)]
    assert literal(sent) and len(sent) >= 3 + 2 + 3, "dev, train and test prompts of the hostile candidates"

    artifact = store.load(outcome.artifact, task=TASK)
    assert artifact.prompt.instruction == f"{HOSTILE} Say magic."
    results = json.loads(outcome.results.read_text())
    assert results["results"][TASK]["exact_match,answer"] == 1.0
    rows = [json.loads(line) for line in next(outcome.results.parent.glob("samples_*.jsonl")).read_text().splitlines()]
    assert literal([row["arguments"]["gen_args_0"]["arg_0"] for row in rows])
    assert literal([row["resps"][0][0] for row in rows]), "the target's answers are logged as written"
    SECTION.record("optimizer reply", "`optimize --method apo` whose optimizer answers every request with "
                   "template syntax (initial instruction, reflection, edit)",
                   "the text reaches the target as written on dev, train and test, is shown to the optimizer as "
                   "written in the next meta-prompts, and is stored as written in best.yaml and lm-eval's samples")
    SECTION.record("target output", "a target whose every answer holds template syntax",
                   "its answers enter the reflection and edit meta-prompts as written (jinja2 sandbox, values only)")


def test_chat_template_path_keeps_every_part_literal():
    from conftest import make_bridge

    target = hostile_lm()
    bridge = make_bridge(target, TASK, harness={"apply_chat_template": True, "fewshot_as_multiturn": True}, abo_n_test=4)
    demo = Demonstration(doc={"id": "d", "input": f"I have {HOSTILE} cats.", "target": "2"}, output=f"{HOSTILE} So 2.")
    for placement in ("system", "user"):
        prompt = Prompt(instruction=HOSTILE, placement=placement, procedure=(HOSTILE,), demonstrations=(demo,),
                        answer_prefix="Then {{ x }} {% if %}:")
        [score] = bridge.score([prompt], "dev", [0, 1])
        for sample in score.samples:
            turns = re.split(r"<\|(system|user|assistant)\|>\n", sample.prompt)[1:]
            roles = turns[0::2]
            assert roles == (["system"] if placement == "system" else []) + ["user", "assistant", "user", "assistant"]
            assert sample.prompt.count(HOSTILE) == 4, "instruction, step, demonstration question and answer"
            assert sample.prompt.rstrip().endswith("Then {{ x }} {% if %}:")
            assert not any(e in sample.prompt for e in EVALUATED)
    SECTION.record("chat template", "instruction, procedure step, demonstration question and answer and answer "
                   "prefix all holding template syntax, placed in the system message or the user turn, rendered "
                   "through lm-eval with `--apply_chat_template` (a jinja2 chat template)",
                   "each part appears in its own turn exactly as written")


class RecordingProxy:
    """A pass-through in front of the embedded server on 127.0.0.1: every request body the server receives, and
    its reply, as they crossed the wire."""

    def __init__(self, server):
        self.model, self.upstream, self.exchanges = server.model, server.base_url.rsplit("/v1", 1)[0], []
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                request = urllib.request.Request(proxy.upstream + self.path, data=body, method="POST",
                                                 headers={"Content-Type": "application/json"})
                with urllib.request.urlopen(request, timeout=600) as answer:
                    data = answer.read()
                proxy.exchanges.append((self.path, json.loads(body), json.loads(data)))
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base_url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def ask(self, path: str, body: dict) -> dict:
        request = urllib.request.Request(self.upstream + path, data=json.dumps(body).encode(), method="POST",
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=60) as answer:
            return json.loads(answer.read())


@pytest.mark.slow
def test_the_real_model_receives_the_text_literally_through_the_stock_cli(gemma_server, tmp_path):
    demo = Demonstration(doc={"id": "d", "input": "I have a cat. How many animals do I have?", "target": "1"},
                         output=f"{HOSTILE} So the answer is 1.")
    prompt = Prompt(instruction=HOSTILE, demonstrations=(demo,), answer_prefix="{{ 6*111111 }}")
    store.save(store.Artifact(task=TASK, method="manual", prompt=prompt), tmp_path / "best.yaml")
    proxy = RecordingProxy(gemma_server)
    try:
        run_cli(bin_path("lm_eval"), "--model", "local-completions", "--model_args", local_completions_args(proxy),
                "--include_path", str(tasks_dir()), "--tasks", TASK, "--limit", "1", "--gen_kwargs", "max_gen_toks=8",
                "--metadata", json.dumps({"abo_prompt": "best.yaml"}), "--output_path", "out", "--log_samples",
                cwd=tmp_path)
    finally:
        proxy.httpd.shutdown()
    [(path, body, answer)] = proxy.exchanges
    received = body["prompt"] if isinstance(body["prompt"], str) else body["prompt"][0]
    assert path == "/v1/completions" and literal([received]) and received.count(HOSTILE) == 2
    assert received.endswith("A: {{ 6*111111 }}")
    assert received == samples(tmp_path / "out", TASK)[0]["arguments"]["gen_args_0"]["arg_0"], "what lm-eval logged"
    # the model's own tokens of the text it received: the count it answered with, and they decode to the text itself
    tokens = proxy.ask("/extras/tokenize", {"input": received, "model": proxy.model})["tokens"]
    assert answer["usage"]["prompt_tokens"] == len(tokens)
    decoded = proxy.ask("/extras/detokenize", {"tokens": tokens, "model": proxy.model})["text"]
    assert decoded.endswith(received) and literal([decoded])
    SECTION.record("stock CLI, real model", "an artifact whose instruction, demonstration and answer prefix hold "
                   "template syntax, run by the stock `lm_eval` CLI on gemma-3-270m served on 127.0.0.1",
                   "the request body the server received holds each part exactly as written, and gemma-3-270m's "
                   "own tokens of it (as many as the reply counted) decode to that text")
