"""The methods as their sources publish them, and ABO as this project defines it: scripted optimizer
replies, a rule-based target, real lm-eval scoring."""

import json

from conftest import ScriptedLLM, make_bridge, rule_lm
from fakeserver import FakeServer

from lm_eval_abo.config import OptimizeConfig
from lm_eval_abo.optimize import optimize
from lm_eval_abo.optimizers import METHODS
from lm_eval_abo.optimizers.base import Context
from lm_eval_abo.optimizers.search import Search


def context(reply, method: str, **params):
    bridge = make_bridge(rule_lm(), abo_n_train=8, abo_n_dev=4)
    llm = ScriptedLLM(reply)
    ctx = Context(llm=llm, bridge=bridge, params={**METHODS[method].defaults, **params}, seed=1, train_pool=list(range(8)),
                  sampling_temperature=1.0)
    return ctx, llm


def test_sampling_calls_sample_and_reflections_do_not():
    def reply(messages):
        text = messages[0]["content"]
        return "<reason>It never says the magic word.</reason>" if "<reason>" in text else "<prompt>Count the items.</prompt>"

    ctx, llm = context(reply, "apo", gradients=1, paraphrases=1)
    Search(METHODS["apo"], ctx, 1, [0, 1, 2, 3], minibatch=4, patience=None).run(1, None, lambda s, r: None, lambda r: None)
    kinds = {}
    for messages, temperature in zip(llm.requests, llm.temperatures):
        text = messages[0]["content"]
        kind = "reflection" if "<reason>" in text else "variation" if "variation" in text else "edit" if "improved" in text else "initial"
        kinds.setdefault(kind, set()).add(temperature)
    assert kinds == {"initial": {1.0}, "reflection": {None}, "edit": {1.0}, "variation": {1.0}}


def test_every_optimizer_call_is_stored_as_rendered_with_its_reply(tmp_path):
    with FakeServer() as server:
        config = OptimizeConfig(task="abo_object_counting_synth", method="ape", optimizer="openai/fake", rounds=1, beam=1,
                                train_limit=4, dev_limit=3, test_limit=3, minibatch=2, method_args={"paraphrases": 1},
                                optimizer_args={"api_base": server.base_url, "api_key": "x"}, optimizer_cache=None,
                                output=str(tmp_path))
        outcome = optimize(config, out=lambda line: None, lm=rule_lm())
        asked = [r.body for r in server.requests if r.path.endswith("/chat/completions")]
    calls = [json.loads(line) for r in (0, 1) for line in (outcome.run_dir / "metaprompts" / f"round-{r}.jsonl").read_text().splitlines()]
    assert [c["messages"] for c in calls] == [a["messages"] for a in asked], "exactly what the optimizer was sent"
    assert [c["round"] for c in calls] == [0, 1] and [c["template"] for c in calls] == ["initial_instruction", "paraphrase"]
    assert all(c["reply"] and c["temperature"] == 1.0 and isinstance(c["seed"], int) for c in calls)
    assert outcome.artifact_data.settings["sampling_temperature"] == 1.0
