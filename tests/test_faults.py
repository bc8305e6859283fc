"""Optimizer faults against a real HTTP server on 127.0.0.1 that the test scripts (tests/fakeserver.py),
reached through litellm exactly as `--optimizer openai/<alias> --optimizer_args api_base=...` does:
rate limits, server errors, time-outs, hanging and dropped connections, malformed and untagged replies.
Each is retried or dropped, and a whole run with all of them still ends with an artifact."""

import logging
from dataclasses import dataclass

import pytest
from conftest import rule_lm
from fakeserver import Action, FakeServer, close, hang, malformed, reply, status
from reliability import Section, code, normalise

from lm_eval_abo.infra.errors import AboError
from lm_eval_abo.infra.llm import OptimizerLLM, _RetryAfterOrBackoff
from lm_eval_abo.optimizers.base import OptimizerCalls, first_tag

MESSAGES = [{"role": "user", "content": "Write an instruction between <prompt> and </prompt>."}]
GOOD = "<prompt>Count every item.</prompt>"
# fast client settings for tests: 1 s per call, 2 retries, 10 ms first backoff
CLIENT = {"timeout": 1, "num_retries": 2, "retry_backoff": 0.01}


@dataclass
class Case:
    id: str
    tried: str
    script: list[Action]
    answered: bool  # the request ends with a reply (else it is dropped with a warning)


CASES = [
    Case("rate limit (429)", "two HTTP 429 replies with `Retry-After: 0`, then a normal reply",
         [status(429, retry_after=0)] * 2, True),
    Case("server errors (5xx)", "HTTP 500, then 503, then a normal reply", [status(500), status(503)], True),
    Case("reply slower than the time-out", "a reply delayed 3 s with `timeout=1`, then a normal reply",
         [reply(GOOD, delay_s=3)], True),
    Case("hanging connection", "the server accepts the request and never answers, then a normal reply", [hang()], True),
    Case("connection closed", "the server closes the connection without a reply, then a normal reply", [close()], True),
    Case("malformed reply", "HTTP 200 with a body that is not JSON, then a normal reply", [malformed()], True),
    Case("retries exhausted", "HTTP 503 on the first try and on both retries (`num_retries=2`)",
         [status(503)] * 3, False),
]
SECTION = Section("optimizer-faults", "Optimizer faults (tests/test_faults.py)", [c.id for c in CASES] + [
    "reply without the asked tags", "untagged twice", "refused key (401)", "all faults in one run"])


table = SECTION.fixture()


@pytest.fixture
def server():
    with FakeServer(lambda request: reply(GOOD)) as s:
        yield s


def client(server, **extra) -> OptimizerLLM:
    return OptimizerLLM("openai/fake", {"api_base": server.base_url, "api_key": "x", **CLIENT, **extra})


def first_warning(caplog) -> str:
    found = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    return found[0] if found else ""


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_optimizer_fault_is_retried_or_dropped(server, caplog, case):
    server.then(*case.script)
    llm = client(server)
    with caplog.at_level(logging.WARNING, logger="lm_eval_abo"):
        [answer] = llm.complete_many([(MESSAGES, 0)])
    tries = server.count("/chat/completions")
    if case.answered:
        assert answer == GOOD and tries == len(case.script) + 1 and llm.usage.failures == 0
        happens = f"retried; answered on try {tries}; the run goes on"
    else:
        assert answer is None and tries == 3 and llm.usage.failures == 1
        warning = first_warning(caplog)
        assert "dropped" in warning
        happens = (f"{tries} tries, then the request is dropped with a warning and the run goes on: "
                   f"{code(normalise(warning))}")
    SECTION.record(case.id, case.tried, happens)


def test_retry_after_is_honoured_and_backoff_applies_without_it():
    class Outcome:
        def __init__(self, error):
            self.error = error

        def exception(self):
            return self.error

    class State:
        attempt_number = 1

        def __init__(self, error):
            self.outcome = Outcome(error)

    limited = Exception("429")
    limited.litellm_response_headers = {"retry-after": "7"}
    wait = _RetryAfterOrBackoff(backoff_s=0.5)
    assert wait(State(limited)) == 7.0
    assert 0.5 <= wait(State(Exception("500"))) <= 1.0, "no header: the first backoff (plus jitter)"
    limited.litellm_response_headers = {"retry-after": "3600"}
    assert wait(State(limited)) <= 1.0, "an hour is not honoured"


def ask(llm):
    return OptimizerCalls(llm, seed=1).ask("test", [("paraphrase", {"instruction": "Count."})], first_tag("prompt"), "prompt")


def test_a_reply_without_tags_is_asked_again_once(server, caplog):
    server.then(reply("Sure! Count every item."))
    used = ask(client(server))
    assert used == ["Count every item."]
    resent = server.requests[1].body["messages"]
    roles = [m["role"] for m in resent]
    assert roles == ["user", "assistant", "user"] and "<prompt>" in resent[-1]["content"]
    assert resent[1]["content"] == "Sure! Count every item.", "the bad reply is shown back"
    SECTION.record("reply without the asked tags", "a normal reply without `<prompt>...</prompt>`, then a tagged one",
                   f"asked again: {server.count()} requests, the second's turns {' / '.join(roles)} (the bad reply "
                   f"shown back, then a format reminder); the reply used: {code(used[0])}")


def test_a_reply_untagged_twice_is_dropped_with_a_warning(server, caplog):
    server.then(reply("no tags"), reply("still no tags"))
    with caplog.at_level(logging.WARNING, logger="lm_eval_abo"):
        assert ask(client(server)) == [None]
    warning = first_warning(caplog)
    assert "dropped a reply without <prompt>" in warning and server.count() == 2
    SECTION.record("untagged twice", "two replies without the asked tags",
                   f"the request is dropped with a warning, the run goes on: {code(warning)}")


def test_a_refused_key_stops_at_once_with_one_line_and_the_key_masked(server):
    key = "sk-test-PLANTED-refused-0123456789"
    server.then(status(401, message=f"Incorrect API key provided: {key}"))
    with pytest.raises(AboError) as error:
        client(server, api_key=key).complete(MESSAGES)
    message = str(error.value)
    assert key not in message and "***" in message and "\n" not in message and server.count() == 1
    SECTION.record("refused key (401)", "HTTP 401 whose message echoes the key",
                   f"no retry; the run stops with one line (a user error: exit code 2): {code(normalise(message))}")


def test_a_run_meeting_every_fault_still_ends_with_an_artifact(tmp_path, caplog):
    from lm_eval_abo.artifact import store
    from lm_eval_abo.run.optimize import OptimizeConfig, optimize

    with FakeServer() as server, caplog.at_level(logging.WARNING, logger="lm_eval_abo"):
        # round 0 asks for one initial instruction (answered, untagged, so asked again: answered), round 1
        # for one paraphrase (dropped); each try after a fault is a retry
        server.then(status(429, retry_after=0), hang(), reply("no tags"), close(), malformed(), reply(GOOD),
                    status(500), status(502), status(503))
        config = OptimizeConfig(
            task="abo_object_counting_synth", method="ape", optimizer="openai/fake",
            optimizer_args={"api_base": server.base_url, "api_key": "x", **CLIENT}, rounds=1, beam=1,
            train_limit=4, dev_limit=3, test_limit=3, minibatch=2, method_args={"paraphrases": 1},
            optimizer_cache=None, output=str(tmp_path), concurrency=1,
            metadata={"abo_n_train": 8, "abo_n_dev": 4, "abo_n_test": 4},
        )
        outcome = optimize(config, out=lambda line: None, lm=rule_lm())
    artifact = store.load(outcome.artifact, task=config.task)
    assert [r["round"] for r in artifact.trace] == [0, 1] and artifact.scores["test"]["n"] == 3
    origins = [c["origin"] for r in artifact.trace for c in r["candidates"]]
    assert origins == ["baseline", "initial"], "round 1's only request was dropped"
    assert artifact.usage["optimizer"]["failures"] == 1 and "dropped" in caplog.text
    SECTION.record(
        "all faults in one run", "`optimize` (ape, 1 round) whose optimizer meets a 429, a hang, an untagged reply, "
        "a closed connection, a malformed body, then 500, 502, 503 in a row",
        f"the run finishes: rounds 0-1 in the trace, {len(origins)} candidates scored, 1 request dropped, "
        "best.yaml written and evaluated on test",
    )
