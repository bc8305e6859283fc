"""promptfoo's `similar`, `answer-relevance` and `g-eval` assertions graded as the real promptfoo CLI grades
them, with the same grader and the same embedding model.

A scripted OpenAI-compatible server on 127.0.0.1 (tests/fakeserver.py) is both: its `/v1/embeddings` gives
each text a fixed vector (the counts of its letters, so that texts alike have vectors alike), and its chat
endpoint answers each grading request with the recorded reply of the case the request is about (a
`[case-N:]` mark in the assertion's value or in the reply graded). promptfoo (echo provider: the reply is the
test's `q`) grades the config; the config is imported and graded here with the same server. Both must send the
grader the same messages and embed the same texts, and reach the same pass/fail and score, case by case.
"""

import json
import re
import string
from pathlib import Path

import pytest
import yaml
from conftest import bin_path, run_cli
from fakeserver import FakeServer, embeddings, reply
from promptfoo_cli import judged_server, run_promptfoo

from lm_eval_abo.artifact import store
from lm_eval_abo.cost.ledger import Usage
from lm_eval_abo.embedded import minilm
from lm_eval_abo.promptfoo import assertions, grader, hooks
from lm_eval_abo.promptfoo.importer import import_config


def letters(text: str) -> list[float]:
    """The test's embedding: per letter a-z its count, halved, a quarter more for vowels (exact in binary)."""
    low = text.lower()
    return [low.count(c) / 2 + (0.25 if c in "aeiou" else 0.0) for c in string.ascii_lowercase]


S, NS, AR, G = "similar", "not-similar", "answer-relevance", "g-eval"
STEPS = '{"steps": ["Check the reply names a city.", "Check it is brief."]}'
# (reply of the target, assertion, grader replies by step: "steps"/"evaluate" for g-eval, "question" for
# answer-relevance; extra vars)
CASES = [
    ("Paris is the capital of France", {"type": S, "value": "The capital of France is Paris"}, {}, {}),
    ("Paris is the capital of France", {"type": S, "value": "Paris", "threshold": 0.9}, {}, {}),
    ("Paris", {"type": S, "value": "Rome", "threshold": 0.3}, {}, {}),
    ("Paris", {"type": NS, "value": "Rome", "threshold": 0.5}, {}, {}),
    ("Paris", {"type": NS, "value": "Paris"}, {}, {}),
    ("Paris", {"type": S, "value": ["zebra quiz", "Paris!"]}, {}, {}),
    ("Paris", {"type": S, "value": ["zebra quiz", "jukebox"]}, {}, {}),
    ("Paris is big", {"type": "similar:dot", "value": "Paris is large", "threshold": 5}, {}, {}),
    ("Paris is big", {"type": "similar:euclidean", "value": "Paris is large", "threshold": 1.2}, {}, {}),
    ("Paris is big", {"type": "not-similar:euclidean", "value": "Paris is large", "threshold": 1.2}, {}, {}),
    ("Paris is big", {"type": "similar:cosine", "value": "Paris is large", "weight": 2}, {},
     {"more": [{"type": "contains", "value": "zzz"}], "threshold": 0.5}),
    ("Paris is the capital of France. [case-11:]", {"type": AR, "threshold": 0.8},
     {"question": "What is the capital of France?"}, {"query": "Which city is the capital of France?"}),
    ("Paris is the capital of France. [case-12:]", {"type": AR}, {"question": "Where is the Eiffel tower?"}, {}),
    ("Paris [case-13:]", {"type": AR, "threshold": 0.99}, {"question": "Name a city."}, {"query": "Name any city."}),
    ("Paris [case-14:]", {"type": AR}, {"question": ""}, {"query": "q"}),
    ("Paris", {"type": G, "value": "names a city"}, {"steps": STEPS, "evaluate": '{"score": 8, "reason": "a city"}'}, {}),
    ("Paris", {"type": G, "value": "strict", "threshold": 0.9}, {"steps": STEPS, "evaluate": '{"score": 8, "reason": "r"}'}, {}),
    ("Paris", {"type": G, "value": "fenced"}, {"steps": "```json\n" + STEPS + "\n```", "evaluate": 'So: {"score":7,"reason":"r"}'}, {}),
    ("Paris", {"type": G, "value": "no steps"}, {"steps": "1. read it\n2. grade it", "evaluate": '{"score": 9}'}, {}),
    ("Paris", {"type": G, "value": "empty steps"}, {"steps": '{"steps": []}', "evaluate": '{"score": 9}'}, {}),
    ("Paris", {"type": G, "value": "text score"}, {"steps": STEPS, "evaluate": '{"score": "6", "reason": "r"}'}, {}),
    ("Paris", {"type": G, "value": "prose"}, {"steps": STEPS, "evaluate": "I would say six."}, {}),
    ("Paris", {"type": G, "value": ["first", "second"]}, {"steps": STEPS, "evaluate": '{"score": 10, "reason": "r"}',
                                                          "evaluate:second": '{"score": 3, "reason": "r"}'}, {}),
    ("Paris", {"type": "not-g-eval", "value": "negated", "threshold": 0.5}, {"steps": STEPS, "evaluate": '{"score": 6}'}, {}),
    ("Paris", {"type": G, "value": "custom", "rubricPrompt": {
        "steps": "STEPS for {{ criteria }}. Answer JSON.",
        "evaluate": "EVALUATE {{ output }} against {{ criteria }} by {{ steps }} out of {{ maxScore }}; source {{ input }}"}},
     {"steps": STEPS, "evaluate": '{"score": 5, "reason": "r"}'}, {}),
]
_CASE = re.compile(r"case-(\d+):")


def script(request):
    if request.path.endswith("/embeddings"):
        return embeddings(request, letters)
    text = json.dumps(request.body.get("messages"), ensure_ascii=False)
    found = _CASE.search(text)
    if not found:
        return reply("unknown request")
    replies = CASES[int(found.group(1))][2]
    if "question" in replies:
        return reply(replies["question"])
    if "Source Text:" in text or "EVALUATE" in text:
        return reply(replies.get("evaluate:second", replies["evaluate"]) if "second" in text else replies["evaluate"])
    return reply(replies["steps"])


def marked(i: int, assertion: dict) -> dict:
    value = assertion.get("value")
    if assertion["type"].endswith(G):
        value = [f"{v} [case-{i}:]" for v in value] if isinstance(value, list) else f"{value} [case-{i}:]"
    return {**assertion, **({"value": value} if value is not None else {})}


def write_config(folder, server: FakeServer):
    tests = []
    for i, (out, assertion, _, extra) in enumerate(CASES):
        variables = {"q": out, **({"query": extra["query"]} if "query" in extra else {})}
        test = {"description": str(i), "vars": variables, "assert": [marked(i, assertion), *extra.get("more", [])]}
        test.update({k: v for k, v in extra.items() if k == "threshold"})
        tests.append(test)
    provider = {"text": {"id": "openai:chat:grader", "config": {"apiBaseUrl": server.base_url}},
                "embedding": {"id": "openai:embedding:letters", "config": {"apiBaseUrl": server.base_url}}}
    config = {"prompts": ["{{ q }}"], "providers": ["echo"], "defaultTest": {"options": {"provider": provider}},
              "tests": tests}
    (folder / "promptfooconfig.yaml").write_text(yaml.safe_dump(config, sort_keys=False, allow_unicode=True))
    return folder / "promptfooconfig.yaml"


def sent(server: FakeServer, start: int, end: int | None = None) -> tuple[list[str], list[str]]:
    """The grading messages and the texts embedded, sorted, of requests[start:end]."""
    chats, texts = [], []
    for r in server.requests[start:end]:
        if r.path.endswith("/embeddings"):
            texts += [r.body["input"]] if isinstance(r.body["input"], str) else r.body["input"]
        else:
            chats.append(json.dumps(r.body["messages"], ensure_ascii=False))
    return sorted(chats), sorted(texts)


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    folder = tmp_path_factory.mktemp("embedding")
    with FakeServer(script) as server, pytest.MonkeyPatch.context() as mp:
        mp.setenv("OPENAI_API_KEY", "local-server-needs-no-key")
        config = write_config(folder, server)
        found = run_promptfoo(config, folder / "results.json")
        theirs = {int(r["testCase"]["description"]): (r["success"], round(r["score"], 9)) for r in found["results"]}
        end = len(server.requests)
        _, imported = import_config(config, folder / "tasks", task_name="embedding")
        usage = Usage()
        previous = grader.install(grader.Graders(usage=usage, cache_dir=None))
        try:
            docs = [dict(row) for row in imported.rows]
            hooks.prepare([(doc, doc["q"], [doc["q"]]) for doc in docs], {})
            fetched = len(server.requests)
            ours = {}
            for i, doc in enumerate(docs):
                grading = json.loads(doc[assertions.GRADING_FIELD])
                passed, score = assertions.grade(grading, doc["q"], assertions.env_of(grading, doc["q"]))
                ours[i] = (passed, round(score, 9))
            asked_again = len(server.requests) - fetched
        finally:
            grader.install(previous)
        return theirs, ours, sent(server, 0, end), sent(server, end), usage, asked_again, server.requests[end:]


@pytest.mark.parametrize("kind", [S, AR, G])
def test_embedding_and_g_eval_assertions_conform_to_promptfoo(graded, kind):
    theirs, ours = graded[0], graded[1]
    mine = [i for i, case in enumerate(CASES) if case[1]["type"].split(":")[0].removeprefix("not-") == kind]
    differences = [f"case {i} {CASES[i][1]}: promptfoo {theirs[i]}, here {ours[i]}" for i in mine if theirs[i] != ours[i]]
    assert not differences, "\n".join(differences)
    assert {theirs[i][0] for i in mine} == {True, False}


def test_the_grader_and_the_embedding_model_are_asked_what_promptfoo_asks(graded):
    _, _, (their_chats, their_texts), (our_chats, our_texts), usage, asked_again, ours = graded
    embedding_calls = sum(r.path.endswith("/embeddings") for r in ours)
    assert our_chats == their_chats, "the same grading messages, as often (answer-relevance asks three times)"
    # the texts promptfoo embeds, each once per pass; a list's values all at once (promptfoo stops at the first that passes)
    listed = {v for case in CASES if isinstance(case[1].get("value"), list) for v in case[1]["value"]}
    assert set(their_texts) <= set(our_texts) <= set(their_texts) | listed
    assert len(our_texts) == len(set(our_texts))
    assert asked_again == 0, "the pass's requests were all fetched before grading, the second steps too"
    assert embedding_calls <= hooks.MAX_STEPS, "a step's texts embedded in one call"
    assert usage.calls == len(our_chats) + embedding_calls, "every call in the grader's line"
    assert usage.prompt_tokens == sum(r.usage["prompt_tokens"] for r in ours), "the server's own usage"


# --- the offline embedding model -------------------------------------------------------------------------

REFERENCE = json.loads((Path(__file__).parent / "data" / "minilm_reference.json").read_text())


def test_the_offline_embedding_model_gives_the_reference_vectors():
    """all-MiniLM-L6-v2 in numpy equals the model run by transformers on torch (tests/data, made once)."""
    ours = minilm.embed(REFERENCE["texts"])
    for (vector, tokens), expected, text in zip(ours, REFERENCE["vectors"], REFERENCE["texts"]):
        assert max(abs(a - b) for a, b in zip(vector, expected)) < 1e-6, text
        assert 0 < tokens == minilm.count_tokens(text)


def reference_cosine(a: str, b: str) -> float:
    va, vb = (REFERENCE["vectors"][REFERENCE["texts"].index(t)] for t in (a, b))
    return sum(x * y for x, y in zip(va, vb))


def test_an_imported_similar_assertion_is_graded_by_the_offline_model_into_the_grader_line(tmp_path):
    """A config naming no embedding provider: its `similar` assertions are embedded by the offline model; the
    verdicts and scores are those of the reference vectors, the calls and tokens in the grader's line."""
    expected = "A man is eating food."
    config = tmp_path / "promptfooconfig.yaml"
    config.write_text(yaml.safe_dump({"prompts": ["Describe: {{ q }}"], "tests": [
        {"vars": {"q": q}, "assert": [{"type": "similar", "value": expected}]} for q in REFERENCE["texts"][1:4]]}))
    _, imported = import_config(config, tmp_path / "tasks", task_name="alike")
    assert any("embedding assertions (3): embedded by embedded/all-minilm-l6-v2 (offline)" in n for n in imported.notes)
    usage = Usage()
    previous = grader.install(grader.Graders(usage=usage, cache_dir=None))
    try:
        docs = imported.rows
        hooks.prepare([(doc, f"Describe: {doc['q']}", [doc["q"]]) for doc in docs], {})
        for doc in docs:
            grading = json.loads(doc[assertions.GRADING_FIELD])
            passed, score = assertions.grade(grading, doc["q"], assertions.env_of(grading))
            cosine = reference_cosine(expected, doc["q"])
            assert score == pytest.approx(cosine, abs=1e-6) and passed == (cosine >= 0.75)
            assert hooks.process_results(doc, [doc["q"]])["pass_rate"] == float(passed)
        models = grader.current().models()
    finally:
        grader.install(previous)
    tokens = sum(minilm.count_tokens(t) for t in REFERENCE["texts"][:4])
    assert usage.calls == 1 and usage.prompt_tokens == tokens and usage.completion_tokens == 0
    assert usage.cost_known and usage.cost_usd == 0.0 and models == [grader.DEFAULT_EMBEDDER]


def test_a_run_of_an_imported_similar_config_counts_the_offline_embedder_in_its_ledger(tmp_path):
    """`optimize` on an imported `similar` config (target and optimizer on a scripted server, the embedding
    model the real offline one): the embedding calls in the grader's line and its projection, at $0."""

    from lm_eval_abo.config import OptimizeConfig
    from lm_eval_abo.run.optimize import optimize

    config = tmp_path / "promptfooconfig.yaml"
    config.write_text(yaml.safe_dump({"prompts": ["Count the items.\n\nQ: {{ q }}\nA:"], "tests": [
        {"vars": {"q": f"I have {i} apples and {i % 3} pears. How many fruits?"},
         "assert": [{"type": "similar", "value": "So the answer is 3.", "threshold": 0.95}]} for i in range(12)]}))
    import_config(config, tmp_path / "tasks", task_name="alike", n_train=5, n_dev=3)
    lines = []
    with judged_server() as server:
        settings = OptimizeConfig(
            task="alike", include_path=[str(tmp_path / "tasks")], method="ape", model="local-completions",
            model_args=f"model=fake,base_url={server.base_url}/completions,tokenizer_backend=None,tokenized_requests=False,"
                       "max_retries=1", optimizer="openai/fake", optimizer_args={"api_base": server.base_url, "api_key": "x"},
            target_price=(3.0, 15.0), optimizer_price=(1.0, 2.0), rounds=1, beam=1, method_args={"paraphrases": 1},
            optimizer_cache=None, concurrency=1, output=str(tmp_path / "runs"), gen_kwargs={"max_gen_toks": 16})
        artifact = optimize(settings, out=lines.append).artifact_data
    used, projected = artifact.usage["grader"], artifact.usage["projection"]["total"]["grader"]
    assert used["calls"] > 0 and used["prompt_tokens"] > 0 and used["completion_tokens"] == 0
    assert used["cost_known"] and used["cost_usd"] == 0.0 and artifact.usage["grader_models"] == [grader.DEFAULT_EMBEDDER]
    assert used["calls"] <= projected["calls"] and projected["completion_tokens"] == 0
    assert artifact.scores["test"]["metric"] == "pass_rate,none" and any("grader " in line for line in lines[1:])


def test_the_projection_counts_every_step(tmp_path):
    """Per document, as promptfoo asks: g-eval twice per criterion (2 criteria: 4 calls), answer-relevance three
    questions and four embeddings (the query and each question), similar two embeddings (value and reply)."""
    config = tmp_path / "promptfooconfig.yaml"
    config.write_text(yaml.safe_dump({"prompts": ["Q: {{ q }}"], "tests": [
        {"vars": {"q": str(i)}, "assert": [{"type": "g-eval", "value": ["is short", "is polite"]}, {"type": "answer-relevance"},
                                           {"type": "similar", "value": "a number"}]} for i in range(3)]}))
    rows = import_config(config, tmp_path / "tasks", task_name="steps")[1].rows
    used = hooks.projected_grading(rows, 10, "openai/gpt-4o-mini", None, {})
    assert used.calls == 3 * (4 + 3 + 4 + 2)
    alone = hooks.projected_grading(rows[:1], 10, "openai/gpt-4o-mini", None, {})
    assert alone.completion_tokens == 4 * hooks.REPLY_TOKENS["g-eval"] + 3 * hooks.REPLY_TOKENS["answer-relevance"]


def test_answer_relevance_with_the_offline_model(tmp_path, monkeypatch):
    """answer-relevance of an imported config: a scripted grader writes the question, the offline model embeds it
    and the test's query; the score is the cosine of the reference vectors."""
    query, question = "Which city is the capital of France?", "Paris is the capital of France."
    monkeypatch.setenv("OPENAI_API_KEY", "local-server-needs-no-key")
    with FakeServer(lambda request: reply(question)) as server:
        config = tmp_path / "promptfooconfig.yaml"
        config.write_text(yaml.safe_dump({
            "prompts": ["Q: {{ query }}"], "defaultTest": {"options": {"provider": {"id": "openai:chat:judge",
                                                                                   "config": {"apiBaseUrl": server.base_url}}}},
            "tests": [{"vars": {"query": query}, "assert": [{"type": "answer-relevance", "threshold": t}]} for t in (0.5, 0.7, 0.9)]}))
        rows = import_config(config, tmp_path / "tasks", task_name="relevant")[1].rows
        usage = Usage()
        previous = grader.install(grader.Graders(usage=usage, cache_dir=None))
        try:
            hooks.prepare([(doc, f"Q: {query}", ["Paris."]) for doc in rows], {})
            graded = [assertions.grade(json.loads(doc[assertions.GRADING_FIELD]), "Paris.",
                                       assertions.env_of(json.loads(doc[assertions.GRADING_FIELD]), f"Q: {query}")) for doc in rows]
        finally:
            grader.install(previous)
    cosine = reference_cosine(query, question)
    assert [score for _, score in graded] == pytest.approx([cosine] * 3, abs=1e-6)
    assert [passed for passed, _ in graded] == [cosine >= t for t in (0.5, 0.7, 0.9)]
    # the three tests ask the same: three questions (seeds 0, 1, 2) once per pass, then one embedding call
    assert sorted(r.body["seed"] for r in server.requests) == [0, 1, 2] and usage.calls == 3 + 1


def imported_and_optimized(tmp_path: Path, tests: list[dict], task_name: str):
    """A capitals config with these promptfoo tests imported, then one round of ape on the embedded models
    (gemma-3-270m the target, qwen2.5-coder-0.5b the optimizer and, where the config names none, the grader):
    the run's artifact and what `optimize` printed."""
    config = tmp_path / "promptfooconfig.yaml"
    config.write_text(yaml.safe_dump({"prompts": ["Answer with the capital city only.\n\nCountry: {{ country }}\nCapital:"],
                                      "tests": tests}))
    run_cli(bin_path("lm-eval-abo"), "import", "promptfoo", str(config), "-o", str(tmp_path / "tasks"), "--task-name",
            task_name, "--n-train", "2", "--n-dev", "2", cwd=tmp_path)
    proc = run_cli(bin_path("lm-eval-abo"), "optimize", "--include_path", str(tmp_path / "tasks"), "--task", task_name,
                   "--method", "ape", "--model", "abo-embedded", "--model_args", "model=gemma-3-270m",
                   "--optimizer", "embedded/qwen2.5-coder-0.5b", "--optimizer_args", "max_tokens=160", "--rounds", "1",
                   "--beam", "1", "--method-args", "paraphrases=1", "--gen_kwargs", "max_gen_toks=16", "--output", "runs",
                   "--optimizer-cache", str(tmp_path / "cache"), cwd=tmp_path, timeout=3600)
    return store.load(tmp_path / "runs" / task_name / "ape" / "best.yaml", task=task_name), proc.stdout


@pytest.mark.slow
def test_embedded_run_of_an_imported_llm_rubric_g_eval_and_similar_config(tmp_path):
    """The embedded models end to end (minutes): an imported config whose tests hold an llm-rubric, a g-eval and a
    similar assertion is optimized with gemma-3-270m as the target and qwen2.5-coder-0.5b as the optimizer, which,
    the config naming no grader, grades the llm-rubric and the g-eval; the offline model embeds; every grading call
    is in the ledger's grader line, and the console shows it."""
    artifact, printed = imported_and_optimized(tmp_path, [{"vars": {"country": c, "capital": k}, "assert": [
        {"type": "llm-rubric", "value": "names the capital of {{ country }}"},
        {"type": "g-eval", "value": "names the capital of {{ country }}", "threshold": 0.5},
        {"type": "similar", "value": "{{ capital }}", "threshold": 0.6}]}
        for c, k in (("France", "Paris"), ("Japan", "Tokyo"), ("Kenya", "Nairobi"), ("Peru", "Lima"), ("Italy", "Rome"),
                     ("Egypt", "Cairo"))], "capitals")
    used, test = artifact.usage["grader"], artifact.scores["test"]
    assert used["calls"] > 0 and used["prompt_tokens"] > 0 and used["completion_tokens"] > 0
    assert used["cost_known"] and used["cost_usd"] == 0.0, "local models cost nothing, and say so"
    assert artifact.usage["grader_models"] == sorted(["embedded/qwen2.5-coder-0.5b", grader.DEFAULT_EMBEDDER])
    assert artifact.usage["projection"]["total"]["grader"]["calls"] >= used["calls"]
    assert test["metric"] == "pass_rate,none" and test["n"] == 2 and 0.0 <= test["value"] <= 1.0
    assert "grader calls" in printed and "; grader " in printed
