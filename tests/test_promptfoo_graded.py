"""promptfoo's model-graded assertions (`llm-rubric`, `model-graded-closedqa`, `factuality`) graded as the
real promptfoo CLI grades them, with the same grader.

The grader is a scripted OpenAI-compatible server on 127.0.0.1 (tests/fakeserver.py): each assertion's
value names its case, and the server answers the grading request of that case with the case's recorded
grader reply. promptfoo (echo provider: the reply is the test's `q`) grades the config with that grader; the
config is imported and graded here through the project's grader client with the same server. Both must
send the grader the same messages (promptfoo's grading prompts, the reply printed as promptfoo prints it,
vars that shadow `output` or `input`), and read the same verdicts from its replies: pass/fail and score,
case by case.
"""

import json
import re

import pytest
import yaml
from fakeserver import FakeServer, reply
from promptfoo_cli import RUBRIC_SYSTEM, imported_round_trip, judged_server, judged_task, run_promptfoo

from lm_eval_abo.cost.ledger import Usage
from lm_eval_abo.infra.errors import AboError
from lm_eval_abo.promptfoo import assertions, grader, hooks
from lm_eval_abo.promptfoo.importer import import_config
from lm_eval_abo.promptfoo.reading import read_config

R, QA, F = "llm-rubric", "model-graded-closedqa", "factuality"
# (reply of the target, assertion, grader's reply, extra test fields)
CASES = [
    ("Paris", {"type": R, "value": "names a city"}, '{"reason": "ok", "pass": true, "score": 1}', {}),
    ("Paris", {"type": R, "value": "names a city", "threshold": 0.5}, '{"reason": "partly", "pass": true, "score": 0.4}', {}),
    ("Paris", {"type": R, "value": "is long"}, 'Sure!\n```json\n{"reason": "short", "pass": false, "score": 0.2}\n```', {}),
    ("Paris", {"type": R, "value": "lenient"}, '{reason: unquoted keys, pass: yes, score: "0.8"}', {}),
    ("Paris", {"type": R, "value": "no pass"}, '{"reason": "no pass key", "score": 0.6}', {}),
    ("Paris", {"type": R, "value": "no score"}, '{"reason": "no score", "pass": false}', {}),
    ("Paris", {"type": R, "value": "pass as text"}, '{"pass": "no", "score": 1, "reason": "r"}', {}),
    ("Paris", {"type": R, "value": "prose"}, "I cannot grade this.", {}),
    ("Paris", {"type": R, "value": "brace"}, '{"reason": "a } inside", "pass": true}', {}),
    ("Paris", {"type": R, "value": "two"}, '{"pass": true, "score": 0.9, "reason": "a"} then {"pass": false}', {}),
    ("Paris", {"type": "not-llm-rubric", "value": "negated"}, '{"pass": true, "score": 1, "reason": "r"}', {}),
    ("Paris", {"type": R, "value": "empty"}, "", {}),
    ("Paris", {"type": R, "value": "bad score"}, '{"pass": true, "score": "abc", "reason": "r"}', {}),
    ("Paris", {"type": R, "value": "at threshold", "threshold": 0.5}, '{"pass": true, "score": 0.5, "reason": "r"}', {}),
    ('{"a": 1.50, "b": [1, {"c": null}], "d": true}', {"type": R, "value": "json reply"}, '{"pass": true, "reason": "r"}', {}),
    ("42", {"type": R, "value": "number reply"}, '{"pass": false, "reason": "r"}', {}),
    ("Paris", {"type": R, "value": "shadowed by {{ city }}"}, '{"pass": true, "reason": "r"}',
     {"vars": {"output": "the var named output", "city": "Rome"}}),
    ("Paris", {"type": R, "value": "custom", "rubricPrompt": "Grade {{ output }} by {{ rubric }} ({{ q }}). Answer JSON."},
     '{"pass": true, "score": 0.7, "reason": "r"}', {}),
    ("Paris", {"type": R, "value": "custom chat", "rubricPrompt": [
        {"role": "system", "content": "You grade."}, {"role": "user", "content": "{{ output }} / {{ rubric }}"}]},
     '{"pass": false, "score": 0.1, "reason": "r"}', {}),
    ("Paris", {"type": QA, "value": "names a city"}, "The reply names Paris.\nY\nY", {}),
    ("Paris", {"type": QA, "value": "names a river"}, "No river.\nN\nN", {}),
    ("Paris", {"type": QA, "value": "trailing space"}, "Y\n  \n", {}),
    ("Paris", {"type": QA, "value": "says yes"}, "Yes", {}),
    ("Paris", {"type": F, "value": "Paris"}, '{"category": "A", "reason": "subset"}', {}),
    ("Paris", {"type": F, "value": "Lyon"}, '{"category": "d", "reason": "x"}', {}),
    ("Paris", {"type": F, "value": "odd"}, '{"category": "F", "reason": "x"}', {}),
    ("Paris", {"type": F, "value": "legacy"}, "The answer is (B) because it adds detail.", {}),
    ("Paris", {"type": "model-graded-factuality", "value": "scored"}, '{"category": "C"}',
     {"options": {"factuality": {"agree": 0.5}}}),
    ("Paris", {"type": F, "value": "strict"}, '{"category": "E", "reason": "x"}', {"options": {"factuality": {"differButFactual": 0}}}),
    ("Paris", {"type": F, "value": "none"}, "no category here", {}),
    ("Paris", {"type": F, "value": "input var"}, '{"category": "A"}', {"vars": {"input": "a var named input"}}),
    ("Paris", {"type": R, "value": "weighted", "weight": 2}, '{"pass": false, "score": 0.25, "reason": "r"}',
     {"more": [{"type": "contains", "value": "P"}], "threshold": 0.4}),
]
_CASE = re.compile(r"case-(\d+):")


def script(request):
    """The recorded grader reply of the case the grading request is about."""
    found = _CASE.search(json.dumps(request.body.get("messages")))
    return reply(CASES[int(found.group(1))][2] if found else "unknown request")


def write_config(folder, server: FakeServer):
    tests = []
    for i, (out, assertion, _, extra) in enumerate(CASES):
        marked = {**assertion, "value": f"{assertion['value']} [case-{i}:]"}
        test = {"description": str(i), "vars": {"q": out, **extra.get("vars", {})}, "assert": [marked, *extra.get("more", [])]}
        test.update({k: v for k, v in extra.items() if k in ("options", "threshold")})
        tests.append(test)
    grader_provider = {"id": "openai:chat:grader", "config": {"apiBaseUrl": server.base_url}}
    config = {"prompts": ["{{ q }}"], "providers": ["echo"], "defaultTest": {"options": {"provider": grader_provider}},
              "tests": tests}
    (folder / "promptfooconfig.yaml").write_text(yaml.safe_dump(config, sort_keys=False, allow_unicode=True))
    return folder / "promptfooconfig.yaml"


def messages_sent(server: FakeServer, start: int) -> list[str]:
    return sorted(json.dumps(r.body["messages"], ensure_ascii=False) for r in server.requests[start:])


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    """Per case: promptfoo's (success, score) and ours; and the grader messages each side sent."""
    folder = tmp_path_factory.mktemp("graded")
    with FakeServer(script) as server, pytest.MonkeyPatch.context() as mp:
        mp.setenv("OPENAI_API_KEY", "local-server-needs-no-key")
        config = write_config(folder, server)
        found = run_promptfoo(config, folder / "results.json")
        theirs = {int(r["testCase"]["description"]): (r["success"], round(r["score"], 6)) for r in found["results"]}
        promptfoo_messages = messages_sent(server, 0)
        _, imported = import_config(config, folder / "tasks", task_name="graded")
        start = len(server.requests)
        usage = Usage()
        previous = grader.install(grader.Graders(usage=usage, cache_dir=None))
        try:
            docs = [dict(row) for row in imported.rows]
            hooks.prepare([(doc, doc["q"], [doc["q"]]) for doc in docs], {})
            ours = {}
            for i, doc in enumerate(docs):
                grading = json.loads(doc[assertions.GRADING_FIELD])
                passed, score = assertions.grade(grading, doc["q"], assertions.env_of(grading, doc["q"]))
                assert hooks.process_results(doc, [doc["q"]])["pass_rate"] == float(passed)
                ours[i] = (passed, round(score, 6))
        finally:
            grader.install(previous)
        return theirs, ours, promptfoo_messages, messages_sent(server, start), usage


@pytest.mark.parametrize("kind", ["llm-rubric", "model-graded-closedqa", "factuality"])
def test_model_graded_assertions_conform_to_promptfoo(graded, kind):
    theirs, ours, _, _, _ = graded
    mine = [i for i, case in enumerate(CASES) if kind in case[1]["type"]]
    assert mine
    differences = [f"case {i} {CASES[i][1]} graded by {CASES[i][2]!r}: promptfoo {theirs[i]}, here {ours[i]}"
                   for i in mine if theirs[i] != ours[i]]
    assert not differences, "\n".join(differences)
    assert {theirs[i][0] for i in mine} == {True, False}


def test_the_grader_is_asked_what_promptfoo_asks(graded):
    _, _, promptfoo_messages, our_messages, usage = graded
    assert our_messages == promptfoo_messages
    assert usage.calls == len(our_messages) == len(CASES), "one grader call per model-graded assertion, all counted"


def test_a_config_grader_that_does_not_map_is_refused_and_named(tmp_path):
    config = tmp_path / "promptfooconfig.yaml"
    config.write_text(yaml.safe_dump({"prompts": ["{{ q }}"], "tests": [
        {"vars": {"q": str(i)}, "assert": [{"type": "llm-rubric", "value": "ok", "provider": "bedrock:some-model"}]}
        for i in range(3)]}))
    with pytest.raises(AboError, match="grader provider \"bedrock:some-model\""):
        read_config(config)


def test_without_a_grader_lm_eval_stops_with_one_line(tmp_path):
    config = tmp_path / "promptfooconfig.yaml"
    config.write_text(yaml.safe_dump({"prompts": ["{{ q }}"], "tests": [
        {"vars": {"q": str(i)}, "assert": [{"type": "llm-rubric", "value": "ok"}]} for i in range(3)]}))
    imported = read_config(config)
    assert any("the run's optimizer where the config names no grader" in n for n in imported.notes)
    previous = grader.install(grader.Graders(cache_dir=None))
    try:
        doc = imported.rows[0]
        with pytest.raises(AboError, match="abo_grader"):
            hooks.prepare([(doc, doc["q"], ["reply"])], {})
    finally:
        grader.install(previous)


# --- a run: the grader in the ledger, the projection and the cap ----------------------------------------

PRICE = (1.0, 2.0)  # the optimizer's (and so the grader's) price, dollars per million tokens


def run_judged(server: FakeServer, folder, lines: list, **changes):
    from lm_eval_abo.config import OptimizeConfig
    from lm_eval_abo.run.optimize import optimize

    settings = {
        "task": "judged", "include_path": [judged_task(folder)], "method": "ape", "model": "local-completions",
        "model_args": f"model=fake,base_url={server.base_url}/completions,tokenizer_backend=None,tokenized_requests=False,"
                      "max_retries=1", "optimizer": "openai/fake", "optimizer_args": {"api_base": server.base_url, "api_key": "x"},
        "target_price": (3.0, 15.0), "optimizer_price": PRICE, "rounds": 1, "beam": 1, "method_args": {"paraphrases": 1},
        "optimizer_cache": None, "concurrency": 1, "output": str(folder / "runs"), "gen_kwargs": {"max_gen_toks": 16},
    }
    return optimize(OptimizeConfig(**{**settings, **changes}), out=lines.append).artifact_data


def test_a_run_grades_with_its_optimizer_and_the_grader_is_the_third_line_of_its_ledger(tmp_path):
    lines = []
    with judged_server() as server:
        artifact = run_judged(server, tmp_path, lines)
    graded = [r for r in server.requests if str((r.body.get("messages") or [{}])[0].get("content", "")).startswith(RUBRIC_SYSTEM)]
    optimizer = [r for r in server.requests if r.path.endswith("/chat/completions") and r not in graded]
    usage = artifact.usage
    assert usage["grader"]["calls"] == len(graded) > 0 and usage["optimizer"]["calls"] == len(optimizer) > 0
    for kind in ("prompt_tokens", "completion_tokens"):
        assert usage["grader"][kind] == sum(r.usage[kind] for r in graded), "the server's own usage, summed"
    grader_dollars = sum(r.usage["prompt_tokens"] * PRICE[0] + r.usage["completion_tokens"] * PRICE[1] for r in graded) / 1e6
    assert usage["grader"]["cost_usd"] == pytest.approx(grader_dollars, rel=1e-12, abs=0)
    assert usage["cost_usd"] == pytest.approx(sum(usage[s]["cost_usd"] for s in ("optimizer", "target", "grader")), rel=1e-12)
    # the projection has the grader's line, at most what the run could ask (one call per document scored)
    projected = usage["projection"]["total"]["grader"]
    assert 0 < usage["grader"]["calls"] <= projected["calls"] == usage["projection"]["total"]["target"]["calls"]
    assert "grader calls" in lines[0] and any("grader " in line and "calls" in line for line in lines[1:])
    # each test document passed exactly when the grader said so: its reply holds a 3
    test = artifact.scores["test"]
    assert test["metric"] == "pass_rate,none" and 0 <= test["value"] <= 1


def test_a_grader_given_at_run_time_grades_and_is_counted(tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "local-server-needs-no-key")  # litellm's openai/ models read it
    with judged_server() as server:
        artifact = run_judged(server, tmp_path, [], metadata={"abo_grader": "openai/judge", "abo_grader_api_base": server.base_url},
                              optimizer_args={"api_base": server.base_url, "api_key": "x"})
    graded = [r for r in server.requests if r.body.get("model") == "judge"]
    assert graded and artifact.usage["grader"]["calls"] == len(graded) and artifact.usage["grader_models"] == ["openai/judge"]
    assert all(str(r.body["messages"][0]["content"]).startswith(RUBRIC_SYSTEM) for r in graded)


def test_grader_replies_are_cached_like_the_optimizers(tmp_path, monkeypatch):
    """A second run asks the grader nothing new: the replies come from the reply cache, counted as cached."""
    monkeypatch.setenv("OPENAI_API_KEY", "local-server-needs-no-key")
    with judged_server() as server:
        rows = read_config(_judged_config(tmp_path)).rows
        counts = []
        for _ in range(2):
            usage = Usage()
            previous = grader.install(grader.Graders(default=("openai/fake", {"api_base": server.base_url}), usage=usage,
                                                     cache_dir=tmp_path / "cache"))
            try:
                hooks.prepare([(doc, doc["q"], [f"reply {i}"]) for i, doc in enumerate(rows)], {})
            finally:
                grader.install(previous)
            counts.append((usage.calls, usage.cache_hits, len(server.requests)))
    assert counts == [(len(rows), 0, len(rows)), (len(rows), len(rows), len(rows))]


def _judged_config(folder):
    config = folder / "promptfooconfig.yaml"
    config.write_text(yaml.safe_dump({"prompts": ["Q: {{ q }}"], "tests": [
        {"vars": {"q": f"question {i}"}, "assert": [{"type": "llm-rubric", "value": "answers {{ q }}"}]} for i in range(4)]}))
    return config


def test_the_grader_key_stays_out_of_the_task(tmp_path):
    secret = "sk-grader-do-not-leak-0123456789"
    config = tmp_path / "promptfooconfig.yaml"
    grader_provider = {"id": "openai:chat:judge", "config": {"apiKey": secret, "apiBaseUrl": "http://me:pw@127.0.0.1:9/v1",
                                                             "headers": {"Authorization": secret}}}
    config.write_text(yaml.safe_dump({"prompts": ["Q: {{ q }}"], "defaultTest": {"options": {"provider": grader_provider}},
                                      "tests": [{"vars": {"q": str(i)}, "assert": [{"type": "llm-rubric", "value": "ok"}]}
                                                for i in range(3)]}))
    path, imported = import_config(config, tmp_path / "tasks", task_name="keyed")
    written = "".join(p.read_text() for p in path.parent.iterdir())
    assert secret not in written and "me:pw" not in written
    grading = json.loads(imported.rows[0][assertions.GRADING_FIELD])["assert"][0]
    assert grading["grader"] == {"model": "openai/judge", "api_base": "http://127.0.0.1:9/v1"}


def test_imported_code_and_model_graded_assertions_export_back_and_promptfoo_grades_alike(tmp_path, monkeypatch):
    """import (python, javascript, llm-rubric with the config's grader) -> export -> promptfoo (echo, the same
    grader): promptfoo's verdict on each exported test equals the task's pass_rate on the same reply."""
    monkeypatch.setenv("OPENAI_API_KEY", "local-server-needs-no-key")
    with judged_server() as server:
        config = tmp_path / "promptfooconfig.yaml"
        (tmp_path / "check.py").write_text("def get_assert(output, context):\n    return len(output) / 100\n")
        config.write_text(yaml.safe_dump({
            "prompts": ["Be brief.\n\nSay {{ word }} {{ n }} times"], "providers": ["echo"],
            "defaultTest": {"options": {"provider": {"id": "openai:chat:judge", "config": {"apiBaseUrl": server.base_url}}}},
            "tests": [{"vars": {"word": w, "n": n},
                       "assert": [{"type": "javascript", "value": "output.includes(context.vars.word)"},
                                  {"type": "python", "value": "file://check.py", "threshold": 0.2},
                                  {"type": "llm-rubric", "value": "mentions the digit 3"}]}
                      for w in ("a", "bb", "ccc") for n in ("2", "3")]}))
        found, task, reqs = imported_round_trip(config, tmp_path, "back", instruction="Be brief.")
        previous = grader.install(grader.Graders(cache_dir=None))
        try:
            assert len(found["results"]) == len(reqs) == 4 and found["stats"]["errors"] == 0
            outcomes = set()
            for row in found["results"]:
                req = reqs[row["testIdx"]]
                reply_text = row["response"]["output"]
                hooks.prepare([(req.doc, req.context, [reply_text])], {})
                mine = task.process_results(req.doc, [reply_text])["pass_rate"] == 1.0
                assert row["prompt"]["raw"] == req.context and row["success"] == mine, row["gradingResult"]["reason"]
                outcomes.add(mine)
        finally:
            grader.install(previous)
    assert outcomes == {True, False}


def test_the_commands_as_a_user_types_them_grade_with_the_optimizer_into_the_ledger(tmp_path):
    """`import promptfoo` then `optimize` in subprocesses, with the optimizer's reply cache, a local target and the
    optimizer (which grades, the config naming no grader) on a scripted server: the grader's calls in the ledger."""
    from conftest import bin_path, run_cli

    from lm_eval_abo.artifact import store

    config = tmp_path / "promptfooconfig.yaml"
    config.write_text(yaml.safe_dump({"prompts": ["Answer with the number only.\n\nQ: {{ q }}\nA:"], "tests": [
        {"vars": {"q": f"{i} + {i}?"}, "assert": [{"type": "llm-rubric", "value": "the answer holds the digit 3"}]}
        for i in range(6)]}))
    run_cli(bin_path("lm-eval-abo"), "import", "promptfoo", str(config), "-o", str(tmp_path / "tasks"), "--task-name", "judged",
            "--n-train", "2", "--n-dev", "2", cwd=tmp_path)
    with judged_server() as server:
        proc = run_cli(bin_path("lm-eval-abo"), "optimize", "--include_path", str(tmp_path / "tasks"), "--task", "judged",
                       "--method", "ape", "--model", "local-completions", "--model_args",
                       f"model=fake,base_url={server.base_url}/completions,tokenizer_backend=None,tokenized_requests=False",
                       "--optimizer", "openai/fake", "--optimizer_args", f"api_base={server.base_url},api_key=x,max_tokens=160",
                       "--rounds", "1", "--beam", "1", "--method-args", "paraphrases=1", "--gen_kwargs", "max_gen_toks=16",
                       "--output", "runs", "--optimizer-cache", str(tmp_path / "cache"), cwd=tmp_path)
        graded = [r for r in server.requests if str((r.body.get("messages") or [{}])[0].get("content", "")).startswith(RUBRIC_SYSTEM)]
    artifact = store.load(tmp_path / "runs" / "judged" / "ape" / "best.yaml", task="judged")
    grader_usage = artifact.usage["grader"]
    assert grader_usage["calls"] - grader_usage["cache_hits"] == len(graded) > 0
    assert all(r.body.get("max_tokens") == 160 for r in graded), "the optimizer's own settings grade"
    assert artifact.scores["test"]["n"] == 2 and "grader calls" in proc.stdout and "; grader " in proc.stdout
