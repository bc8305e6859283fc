"""Conformance with the real promptfoo CLI (the pinned npm package, Node required).

Grading: every supported assertion type is run by `promptfoo eval` on recorded outputs (a test's
`providerOutput` is graded without calling a model) and by this package's `assertions.grade`; pass/fail
and score must agree case by case. The corpus holds the cases where JavaScript and Python differ (regex
`\\d`, `$`, `.`, `\\s`, identity escapes; JSON.parse and NaN; Unicode case folding).

Import: configs written as people write them (globs, list vars, defaultTest from a file, `$ref`
templates, Nunjucks filters, vars that reference vars, CSV with padded cells) are run by promptfoo with
its echo provider (the reply is the rendered prompt) and imported; lm-eval must build the same prompts,
as many as promptfoo runs, and grade each echoed reply as promptfoo does."""

import json
from pathlib import Path

import pytest
import yaml
from promptfoo_cli import imported_round_trip, run_promptfoo, with_echo

from lm_eval_abo.promptfoo import assertions
from lm_eval_abo.promptfoo.importer import import_config

NBSP, ARABIC_3 = "\u00a0", "\u0663"

# type -> [(assertion without type, output)]; values hold no template syntax (promptfoo renders them)
CORPUS = {
    "equals": [({"value": "Paris"}, "Paris"), ({"value": "Paris"}, " Paris"), ({"value": 3}, "3"), ({"value": 1.5}, "1.5"),
               ({"value": {"a": 1, "b": [1, 2]}}, '{"b": [1, 2], "a": 1}'), ({"value": {"a": 1}}, '{"a": true}'),
               ({"value": {"a": 1}}, "not json", "not-"), ({"value": "x"}, "y", "not-"), ({"value": [1, 2]}, "[1, 2.0]")],
    "contains": [({"value": "Par"}, "Paris"), ({"value": "par"}, "Paris"), ({"value": 42}, "answer: 42"), ({"value": "x"}, "abc", "not-")],
    "icontains": [({"value": "PAR"}, "paris"), ({"value": "i̇stanbul"}, "İSTANBUL"), ({"value": "sorry"}, "Sure.\n\nSorry, I cannot", "not-")],
    "starts-with": [({"value": " N"}, " Nairobi"), ({"value": "N"}, " Nairobi"), ({"value": "{"}, '{"a": 1}')],
    "contains-any": [({"value": 'red, "b, c", blue'}, "has b, c here"), ({"value": 'red, "b, c", blue'}, "b only"),
                     ({"value": ["x", "y"]}, "a y b"), ({"value": "apple , pear"}, "a pear"), ({"value": ["x", "y"]}, "a y b", "not-")],
    "icontains-any": [({"value": "RED, Blue"}, "the blue one"), ({"value": ["Z"]}, "abc"), ({"value": "A,B"}, "xyz", "not-")],
    "contains-all": [({"value": "a, b"}, "a and b"), ({"value": "a, b"}, "a only"), ({"value": ["1", 2]}, "1 2"), ({"value": "a,b"}, "a", "not-")],
    "icontains-all": [({"value": "A, B"}, "a and b"), ({"value": ["X", "y"]}, "x only")],
    "regex": [({"value": r"\d+"}, ARABIC_3), ({"value": r"\d+"}, "x 42"), ({"value": r"^ok$"}, "ok\n"), ({"value": r"^ok$"}, "ok"),
              ({"value": r"a.b"}, "a\rb"), ({"value": r"a.b"}, "a-b"), ({"value": r"x\sy"}, f"x{NBSP}y"), ({"value": r"\w"}, "é"),
              ({"value": r"caf\e"}, "cafe"), ({"value": r"[^]"}, "\n"), ({"value": r"(?<y>\d{2})-\k<y>"}, "12-12"),
              ({"value": r"\bword\b"}, "a word."), ({"value": r"\S+@\S+"}, "me@x.org"),
              ({"value": r"answer is \d"}, "the answer is 7", "not-")],
    "is-json": [({}, '{"a": 1}'), ({}, "  [1, 2]\n"), ({}, "NaN"), ({}, '{"a": NaN}'), ({}, "{'a': 1}"), ({}, '"x"'),
                ({}, "Sure: {}"), ({}, "{}", "not-"), ({"value": {"type": "object", "required": ["a"]}}, '{"a": 1}'),
                ({"value": {"type": "object", "required": ["a"]}}, '{"b": 1}'),
                ({"value": "type: object\nproperties:\n  n: {type: integer}\n"}, '{"n": 1.0}'),
                ({"value": "type: object\nproperties:\n  n: {type: integer}\n"}, '{"n": "1"}')],
    "levenshtein": [({"value": "sitting", "threshold": 3}, "kitten"), ({"value": "sitting", "threshold": 2}, "kitten"),
                    ({"value": "Paris"}, "Parisian city"), ({"value": "Paris"}, "Pari")],
}
# tests with several assertions: weights, thresholds, assert-set
COMBINED = [
    ({"assert": [{"type": "contains", "value": "a"}, {"type": "contains", "value": "b", "weight": 3}]}, "a"),
    ({"assert": [{"type": "contains", "value": "a"}, {"type": "contains", "value": "b", "weight": 3}], "threshold": 0.2}, "a"),
    ({"assert": [{"type": "contains", "value": "z", "weight": 0}, {"type": "contains", "value": "a"}]}, "a"),
    ({"assert": [{"type": "assert-set", "threshold": 0.5, "assert": [{"type": "contains", "value": "a"}, {"type": "contains", "value": "q"}]},
                 {"type": "icontains", "value": "A", "weight": 2}]}, "a"),
    ({"assert": [{"type": "assert-set", "assert": [{"type": "contains", "value": "a"}, {"type": "contains", "value": "q"}]}]}, "a"),
]


def cases() -> list[tuple[str, dict, str]]:
    out = []
    for kind, items in CORPUS.items():
        for item in items:
            fields, output, prefix = (*item, "")[:3]
            out.append((kind, {"assert": [{"type": prefix + kind, **fields}]}, output))
    out += [("combined", grading, output) for grading, output in COMBINED]
    return out


@pytest.fixture(scope="module")
def promptfoo_grades(tmp_path_factory) -> list[dict]:
    """promptfoo's grading of every case, in the order of `cases()`."""
    folder = tmp_path_factory.mktemp("grading")
    tests = [{"description": f"{i}", "providerOutput": output, "assert": grading["assert"],
              **({"threshold": grading["threshold"]} if "threshold" in grading else {})}
             for i, (_, grading, output) in enumerate(cases())]
    config = folder / "promptfooconfig.yaml"
    config.write_text(yaml.safe_dump({"prompts": ["unused {{ x }}"], "providers": ["echo"], "tests": tests}, allow_unicode=True))
    found = run_promptfoo(config, folder / "results.json")
    assert found["stats"]["errors"] == 0, [r.get("error") for r in found["results"] if r.get("error")]
    return sorted(found["results"], key=lambda r: r["testIdx"])


@pytest.mark.parametrize("kind", [*CORPUS, "combined"])
def test_grading_conforms_to_promptfoo(promptfoo_grades, kind):
    differences = []
    for i, (case_kind, grading, output) in enumerate(cases()):
        if case_kind != kind:
            continue
        theirs = (promptfoo_grades[i]["success"], round(promptfoo_grades[i]["score"], 6))
        passed, score = assertions.grade(grading, output)
        if (passed, round(score, 6)) != theirs:
            differences.append(f"{grading['assert']} on {output!r}: promptfoo {theirs}, here {(passed, score)}")
    assert not differences, "\n".join(differences)


# --- import of configs as people write them -------------------------------------------------------


def write(folder: Path, files: dict) -> None:
    for name, text in files.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text if isinstance(text, str) else yaml.safe_dump(text, sort_keys=False, allow_unicode=True))


AS_WRITTEN = {
    "prompts/b_other.txt": "Other {{ topic }}\n",
    "prompts/a_main.txt": "Answer in one line.\n\nTopic: {{ topic }} ({{ (style | load).tone | upper }})\n"
                          "Doc: {{ doc }}\nQ: {{ question | trim }}{% if hint %} Hint: {{ hint }}{% endif %}\n",
    "docs/one.txt": "First document.\n\n",
    "docs/two.txt": "  Second document  \n",
    "default.yaml": {"vars": {"style": '{"tone": "dry"}', "subject": "rivers", "hint": ""},
                     "assert": [{"type": "icontains", "value": "{{ subject }}"}]},
    "tests.csv": "question , __expected1,__expected2,__metadata:cat\n"
                 "  Where is the Nile?  ,\" contains-any: Nile, Amazon \",not-icontains: sorry ,geo\n"
                 "Longest river?,icontains-all:river,LONGEST,geo\n",
    "promptfooconfig.yaml": {
        "description": "as written",
        "prompts": ["file://prompts/*.txt"],
        "providers": [{"id": "openai:chat:gpt-4o-mini", "config": {"max_tokens": 64, "top_p": 0.9, "seed": 7}}, "replicate:some/model"],
        "assertionTemplates": {"mentions_doc": {"type": "contains", "value": "document"}},
        "defaultTest": "file://default.yaml",
        "derivedMetrics": [{"name": "x", "value": "1"}],
        "tests": [
            {"vars": {"topic": "{{ subject }} basics", "question": ["What is a delta?", "What is a source?"],
                      "doc": "file://docs/*.txt"},
             "assert": [{"$ref": "#/assertionTemplates/mentions_doc"}, {"type": "regex", "value": r"Topic: \w+ basics"}]},
            {"vars": {"topic": "floods", "question": "Why {{ 2 + 2 }}?", "doc": "none", "hint": "think"},
             "assert": [{"type": "latency", "threshold": 500}, {"type": "starts-with", "value": "Answer"}]},
            "file://tests.csv",
        ],
    },
}


def lm_eval_prompts(task_dir: Path, name: str) -> list[tuple[dict, str]]:
    """Every document of the imported task (all splits) with the prompt lm-eval builds for it."""
    from lm_eval.tasks import TaskManager

    from lm_eval_abo.tasks import tasks_dir

    manager = TaskManager(include_path=[str(tasks_dir()), str(task_dir)], include_defaults=False)
    task = manager.load([name])["tasks"][name]
    return [(doc, task.fewshot_context(doc, num_fewshot=0, gen_prefix=task.doc_to_prefix(doc)))
            for split in task.dataset.values() for doc in split]


def test_config_as_written_imports_as_promptfoo_runs_it(tmp_path):
    write(tmp_path, AS_WRITTEN)
    config = tmp_path / "promptfooconfig.yaml"
    path, imported = import_config(config, tmp_path / "tasks", task_name="written")
    found = run_promptfoo(with_echo(config), tmp_path / "results.json")
    assert found["stats"]["errors"] == 0, [r.get("error") for r in found["results"] if r.get("error")]
    # the imported prompt is the first of the glob, labelled as promptfoo labels it
    ours = [r for r in found["results"] if r["prompt"]["label"] == imported.prompt_label]
    assert imported.prompt_label.startswith(f"{tmp_path.resolve()}/prompts/a_main.txt: ") and ours
    # 2 questions x 2 files + 1 + 2 CSV rows = 7 tests after expansion, the latency assertion dropped
    assert len(ours) == len(imported.rows) == 7
    assert any("latency" in note for note in imported.notes) and any("replicate:some/model" in note for note in imported.notes)

    def grading(reply: str, doc: dict) -> tuple:
        passed, score = assertions.grade(json.loads(doc[assertions.GRADING_FIELD]), reply)
        return reply, passed, round(score, 6)

    theirs = sorted((r["prompt"]["raw"], r["success"], round(r["score"], 6)) for r in ours
                    if not any(c["assertion"]["type"] == "latency" for c in r["gradingResult"]["componentResults"]))
    mine = sorted(grading(text, doc) for doc, text in lm_eval_prompts(path.parent, "written") if "floods" not in text)
    assert mine == theirs
    assert {r[1] for r in theirs} == {True, False}


def test_generation_settings_and_the_lm_eval_line(tmp_path, capsys):
    write(tmp_path, AS_WRITTEN)
    from lm_eval_abo.cli import main

    assert main(["import", "promptfoo", str(tmp_path / "promptfooconfig.yaml"), "-o", str(tmp_path / "tasks")]) == 0
    out = capsys.readouterr().out
    task = yaml.safe_load((tmp_path / "tasks" / "abo_pf_promptfooconfig.yaml").read_text().split("\n", 2)[2].replace("!function", ""))
    # promptfoo 0.120.0's openai:chat sends the config's max_tokens, top_p and seed, and no stop
    assert task["generation_kwargs"] == {"until": [], "max_gen_toks": 64, "do_sample": False, "temperature": 0.0,
                                         "top_p": 0.9, "seed": 7}
    assert "--model openai-chat-completions --model_args model=gpt-4o-mini --apply_chat_template" in out


# --- import without Node: refusals, notes, providers, filters ---------------------------------------


def config_file(folder: Path, data: dict) -> Path:
    write(folder, {"promptfooconfig.yaml": data})
    return folder / "promptfooconfig.yaml"


def test_refusal_lists_every_problem_even_with_too_few_tests(tmp_path):
    from lm_eval_abo.infra.errors import AboError
    from lm_eval_abo.promptfoo.reading import read_config

    config = config_file(tmp_path, {
        "prompts": ["Q: {{ q }}"], "providers": ["bedrock:anthropic.claude"], "scenarios": [],
        "tests": [{"vars": {"q": "a"}, "assert": [{"type": "select-best", "value": "ok"}, {"type": "moderation", "value": "a"},
                                                   {"type": "ruby", "value": "true"}, {"$ref": "#/assertionTemplates/none"}]}]})
    with pytest.raises(AboError) as error:
        read_config(config)
    message = str(error.value)
    assert "\n" not in message
    for item in ("bedrock:anthropic.claude", "'select-best' (compares the replies of several prompts", "'moderation' (graded by a model",
                 "'ruby' (runs Ruby code)", "scenarios", "#/assertionTemplates/none", "1 test(s) after expansion"):
        assert item in message, item


def test_list_vars_expand_into_the_cross_product(tmp_path):
    from lm_eval_abo.promptfoo.reading import read_config

    config = config_file(tmp_path, {"prompts": ["{{ a }} {{ b }} {{ c }}"], "tests": [
        {"vars": {"a": ["1", "2", "3", "4", "5"], "b": ["x", "y", "z", "u", "v"], "c": [1, 2]}, "assert": [{"type": "contains", "value": "{{ a }}"}]}]})
    rows = read_config(config).rows
    # 5 x 5 tests; a list whose first item is not text is one value (promptfoo prints it "1,2")
    assert len(rows) == 25 and {r["c"] for r in rows} == {"1,2"}
    assert {(r["a"], r["b"]) for r in rows} == {(a, b) for a in "12345" for b in "xyzuv"}


def test_config_without_assertions_warns(tmp_path, capsys):
    from lm_eval_abo.cli import main

    config = config_file(tmp_path, {"prompts": ["Q: {{ q }}"], "tests": [{"vars": {"q": str(i)}} for i in range(4)]})
    assert main(["import", "promptfoo", str(config), "-o", str(tmp_path / "tasks")]) == 0
    assert "warning: no test has an assertion" in capsys.readouterr().out


def test_tests_filtered_by_prompt_keep_the_imported_prompts(tmp_path):
    from lm_eval_abo.promptfoo.reading import read_config

    config = config_file(tmp_path, {
        "prompts": [{"raw": "A {{ q }}", "label": "short"}, {"raw": "B {{ q }}", "label": "long:v2"}],
        "tests": [{"vars": {"q": str(i)}, "prompts": ["short"]} for i in range(3)]
        + [{"vars": {"q": "only for long"}, "prompts": ["long"]}, {"vars": {"q": "for short*"}, "prompts": ["sh*"]}]})
    imported = read_config(config)
    assert imported.prompt_label == "short" and sorted(r["q"] for r in imported.rows) == ["0", "1", "2", "for short*"]
    assert any("1 other prompt" in note for note in imported.notes)


@pytest.mark.parametrize(("provider", "model", "args"), [
    ("openrouter:meta-llama/llama-3.1-8b-instruct", "local-chat-completions",
     "model=meta-llama/llama-3.1-8b-instruct,base_url=https://openrouter.ai/api/v1/chat/completions"),
    ({"id": "openai:chat:qwen", "config": {"apiBaseUrl": "http://127.0.0.1:8080/v1"}}, "local-chat-completions",
     "model=qwen,base_url=http://127.0.0.1:8080/v1/chat/completions"),
    ("deepseek:deepseek-chat", "local-chat-completions", "model=deepseek-chat,base_url=https://api.deepseek.com/v1/chat/completions"),
    ("anthropic:claude-3-5-haiku-latest", "anthropic-chat-completions", "model=claude-3-5-haiku-latest"),
])
def test_openai_compatible_providers_map_to_lm_eval_api_backends(tmp_path, provider, model, args):
    from lm_eval_abo.promptfoo.reading import read_config

    config = config_file(tmp_path, {"prompts": ["Q: {{ q }}"], "providers": [provider, "azure:chat:x", "replicate:y"],
                                    "tests": [{"vars": {"q": str(i)}, "assert": [{"type": "contains", "value": "1"}]} for i in range(3)]})
    imported = read_config(config)
    assert imported.lm_eval["model"] == model and imported.lm_eval["model_args"].startswith(args) and imported.lm_eval["chat"]
    assert "not imported: azure:chat:x, replicate:y" in " ".join(imported.notes)
    # promptfoo's chat defaults: 1024 tokens, no stop (lm-eval's own would stop at the first blank line)
    assert imported.generation == {"until": [], "max_gen_toks": 1024, "do_sample": False, "temperature": 0.0}


def test_completion_provider_defaults_and_settings(tmp_path):
    from lm_eval_abo.promptfoo.reading import read_config

    config = config_file(tmp_path, {
        "prompts": [{"raw": "Q: {{ q }}", "config": {"temperature": 0.7}}],
        "providers": [{"id": "openai:completion:gemma", "config": {"apiBaseUrl": "http://127.0.0.1:9/v1", "response_format": {"type": "json_object"}}}],
        "tests": [{"vars": {"q": str(i)}, "assert": [{"type": "is-json"}]} for i in range(3)]})
    imported = read_config(config)
    # promptfoo's OpenAiCompletionProvider stops at <|im_end|> and <|endoftext|> by default; the prompt's config wins
    assert imported.generation == {"until": ["<|im_end|>", "<|endoftext|>"], "max_gen_toks": 1024, "do_sample": True, "temperature": 0.7}
    assert not imported.lm_eval["chat"]


def test_chat_provider_carries_response_format(tmp_path):
    from lm_eval_abo.promptfoo.reading import read_config

    config = config_file(tmp_path, {
        "prompts": ['[{"role": "system", "content": "Reply in JSON."}, {"role": "user", "content": "{{ q | upper }}"}]'],
        "providers": [{"id": "openai:chat:gpt-4o-mini", "config": {"response_format": {"type": "json_object"}, "stop": "END"}}],
        "tests": [{"vars": {"q": f"q{i}"}, "assert": [{"type": "is-json"}]} for i in range(3)]})
    imported = read_config(config)
    assert imported.generation["response_format"] == {"type": "json_object"} and imported.generation["until"] == ["END"]
    assert imported.chat and imported.instruction == "Reply in JSON."
    assert sorted(r["promptfoo_prompt"] for r in imported.rows) == ["Q0", "Q1", "Q2"]


def test_templates_never_leave_the_sandbox(tmp_path):
    from lm_eval_abo.infra.errors import AboError
    from lm_eval_abo.promptfoo.reading import read_config

    def tests(*values):
        return [{"vars": {"q": v}, "assert": [{"type": "contains", "value": "x"}]} for v in values]

    # what Nunjucks prints as "" prints "" here; reaching further into Python is refused by the sandbox
    config = config_file(tmp_path, {"prompts": ["Q: {{ q | lower }}"], "tests": tests("{{ ''.__class__ }}", "{{ nothing.at.all }}", "ok")})
    assert sorted(r["promptfoo_prompt"] for r in read_config(config).rows) == ["Q: ", "Q: ", "Q: ok"]
    for hostile in ("{{ ''.__class__.__mro__[1].__subclasses__() }}", "{{ cycler.__init__.__globals__.os }}", "{{ lipsum }}"):
        config = config_file(tmp_path, {"prompts": ["Q: {{ q | lower }}"], "tests": tests(hostile, "a", "b")})
        try:
            rendered = sorted(r["promptfoo_prompt"] for r in read_config(config).rows)
        except AboError as e:
            assert "unsafe" in str(e)
        else:
            assert rendered == ["Q: ", "Q: a", "Q: b"]
    config = config_file(tmp_path, {"prompts": ["Key: {{ env.OPENAI_API_KEY }} {{ q }}"], "tests": tests("1", "2", "3")})
    with pytest.raises(AboError, match="environment variables"):
        read_config(config)


def test_imported_config_exports_back_and_promptfoo_grades_alike(tmp_path):
    """import (Nunjucks prompt, list-valued assertions, assert-set) -> export -> promptfoo (echo): the
    exported config sends lm-eval's prompt and promptfoo grades each reply as the task's pass_rate."""
    config = config_file(tmp_path, {
        "prompts": ["Be brief.\n\nSay {{ word | upper }} {% if n %}{{ n }} times{% endif %}"], "providers": ["echo"],
        "tests": [{"vars": {"word": w, "n": n},
                   "assert": [{"type": "contains-any", "value": ["SAY", "{{ word }}"]},
                              {"type": "assert-set", "threshold": 0.5, "assert": [{"type": "icontains", "value": "{{ word }}"},
                                                                                  {"type": "regex", "value": r"\d times$"}]}]}
                  for w in ("a", "b {{ c }}", "d") for n in ("", "2")]})
    found, task, reqs = imported_round_trip(config, tmp_path, "back", instruction="Be brief.")
    assert len(found["results"]) == len(reqs) == 4 and found["stats"]["errors"] == 0
    for row in found["results"]:
        req = reqs[row["testIdx"]]
        assert row["prompt"]["raw"] == req.context
        assert row["success"] == (task.process_results(req.doc, [row["response"]["output"]])["pass_rate"] == 1.0)
