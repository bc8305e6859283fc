"""promptfoo export and import: escaping, assertions, task generation, and the real promptfoo CLI.

Fast tests need no model. Those that run promptfoo use its `echo` provider (it returns the rendered
prompt) and need Node; the slow ones run the real embedded models: the round trip compares promptfoo
with lm-eval on the same examples, the import is optimized and evaluated by lm-eval."""

import json
from pathlib import Path

import jinja2
import pytest
import yaml
from conftest import ROOT, bin_path, local_completions_args, results_file, run_cli, samples
from promptfoo_cli import exported_requests, imported_round_trip, run_promptfoo, with_echo

from lm_eval_abo.artifact import store
from lm_eval_abo.artifact.prompt import Demonstration, Prompt
from lm_eval_abo.config import HarnessSettings
from lm_eval_abo.infra.errors import AboError
from lm_eval_abo.promptfoo import assertions, syntax
from lm_eval_abo.promptfoo.export import EXACT_MATCH_JS, ExportOptions, export
from lm_eval_abo.promptfoo.importer import import_config, read_config, split_prompt
from lm_eval_abo.tasks import tasks_dir

TASK = "abo_object_counting_synth"
CAPITALS = ROOT / "tests" / "data" / "promptfoo_capitals" / "promptfooconfig.yaml"
HOSTILE = ["{{ 7*7 }}", "{% raw %}", "{{ ''.__class__ }}", "a stray {", "{# c #}", "{%- endraw %}", "#}", "file://x.py"]
SECRET = "sk-do-not-leak-0123456789"


def hostile_artifact(path: Path, target: dict | None = None, **settings) -> Path:
    """An artifact whose instruction and demonstration hold text Nunjucks would execute."""
    demo = Demonstration(doc={"id": "d1", "input": "I have a cat {{ 7*7 }} and a dog. How many animals do I have?", "target": "2"},
                         output="A cat (1) {% raw %} and a dog (1). So the answer is 2.")
    prompt = Prompt(instruction="Count the objects. " + " ".join(HOSTILE), demonstrations=(demo,),
                    answer_format='End with "So the answer is N."')
    return store.save(store.Artifact(task=TASK, method="manual", prompt=prompt, target=target or {}, settings=settings), path)


# --- escaping and translation (no model, no Node) -------------------------------------------------


@pytest.mark.parametrize("text", [*HOSTILE, "{{{x}}}", "}} %} #} {#", "plain", "{{input}}"])
def test_escaped_text_renders_to_itself(text):
    assert jinja2.Environment().from_string(syntax.escape_literal(text)).render() == text
    var = syntax.escape_var(text + "\n")
    assert var.endswith("\n\n") and not var.startswith(("file://", "package:"))


def test_imported_templates_take_plain_placeholders_only():
    assert syntax.template_parts("Q: {{ q }} / {{a}}", "p") == ["Q: ", "q", " / ", "a", ""]
    for bad in ("{% if q %}x{% endif %}", "{{ q | upper }}", "{# note #}"):
        with pytest.raises(AboError, match="plain"):
            syntax.template_parts(bad, "p")


def test_regex_translation():
    assert syntax.python_regex_to_js(r"(?i)the answer is\s*(-?[0-9]+)", "f") == (r"the answer is\s*(-?[0-9]+)", "i")
    assert syntax.python_regex_to_js(r"(?P<n>a)(?P=n)", "f") == (r"(?<n>a)\k<n>", "")
    with pytest.raises(AboError, match="JavaScript"):
        syntax.python_regex_to_js(r"\Aabc", "f")
    assert syntax.js_regex_to_python(r"(?<n>a)\k<n>", "r").fullmatch("aa")


def test_the_javascript_assertion_holds_no_template_syntax():
    # promptfoo renders assertion values with Nunjucks
    assert not syntax._TAG_OPEN.search(EXACT_MATCH_JS)


def test_assertions_grade_as_promptfoo():
    check = assertions.check
    assert check({"type": "equals", "value": " Lima"}, " Lima") and not check({"type": "equals", "value": "Lima"}, " Lima")
    assert check({"type": "contains", "value": "Par"}, "Paris") and not check({"type": "contains", "value": "par"}, "Paris")
    assert check({"type": "icontains", "value": "par"}, "PARIS") and check({"type": "not-icontains", "value": "x"}, "Paris")
    assert check({"type": "starts-with", "value": " N"}, " Nairobi") and not check({"type": "starts-with", "value": "N"}, " Nairobi")
    assert check({"type": "regex", "value": r"^\s*[A-Z]"}, " Rome") and check({"type": "equals", "value": 3}, "3")
    grading = {"assert": [{"type": "contains", "value": "a"}, {"type": "contains", "value": "b", "weight": 3}]}
    assert assertions.grade(grading, "a") == (False, 0.25)
    assert assertions.grade({**grading, "threshold": 0.2}, "a") == (True, 0.25)
    assert assertions.grade({"assert": [{"type": "contains", "value": "z", "weight": 0}]}, "a")[0]
    assert assertions.grade({"assert": []}, "anything") == (True, 1.0)


def test_split_prompt_keeps_the_exact_text():
    assert split_prompt("Be brief.\n\nRules: none.\n\nQ: {{q}}\nA:") == ("Be brief.\n\nRules: none.", "Q: {{q}}\nA:")
    assert split_prompt("Q: {{q}}") == ("", "Q: {{q}}")
    assert split_prompt("Trailing space \n\nQ: {{q}}") == ("", "Trailing space \n\nQ: {{q}}")


# --- import (no model) --------------------------------------------------------------------------


def test_import_builds_a_task_lm_eval_loads(tmp_path):
    from lm_eval.tasks import TaskManager

    from lm_eval_abo.tasks import tasks_dir

    path, imported = import_config(CAPITALS, tmp_path / "tasks", task_name="capitals")
    assert path.name == "capitals.yaml" and len(imported.rows) == 15
    assert imported.lm_eval["model"] == "local-completions"
    manager = TaskManager(include_path=[str(tasks_dir()), str(tmp_path / "tasks")], include_defaults=False)
    task = manager.load(["capitals"])["tasks"]["capitals"]
    assert {k: len(v) for k, v in task.dataset.items()} == {"train": 6, "dev": 3, "test": 6}
    assert task.config.generation_kwargs["until"] == ["\n"] and task.config.generation_kwargs["max_gen_toks"] == 12

    # lm-eval sends what promptfoo renders for the original config: prompt.txt, trimmed, vars filled
    prompt = (CAPITALS.parent / "prompt.txt").read_text().strip()
    task.build_all_requests(limit=6, rank=0, world_size=1)
    spaced = {"Kenya", "Peru"}  # their assertions hold the leading space: starts-with " Nairobi", equals " Lima"
    assert spaced <= {inst.doc["country"] for inst in task.instances}
    for inst in task.instances:
        assert inst.arguments[0] == prompt.replace("{{country}}", inst.doc["country"])
        answer = inst.doc["answer"]
        assert task.process_results(inst.doc, [f" {answer}"])["pass_rate"] == 1.0
        unspaced = task.process_results(inst.doc, [answer])["pass_rate"]
        assert unspaced == (0.0 if inst.doc["country"] in spaced else 1.0)
        assert task.process_results(inst.doc, [" Question: no"])["pass_rate"] == 0.0


def test_unsupported_features_are_listed_in_one_error(tmp_path, capsys):
    config = tmp_path / "promptfooconfig.yaml"
    config.write_text(yaml.safe_dump({
        "prompts": ["Q: {{q}}"], "providers": ["bedrock:anthropic.claude", "openai:chat:gpt-4o-mini"],
        "scenarios": [], "tests": [{"vars": {"q": str(i)}, "assert": [{"type": "pi", "value": "ok"},
                                                                      {"type": "webhook", "value": "http://127.0.0.1:9"}]} for i in range(3)],
    }))
    with pytest.raises(AboError) as error:
        read_config(config)
    message = str(error.value)
    for item in ("bedrock:anthropic.claude", "'pi'", "'webhook' (calls a web service)", "scenarios"):
        assert item in message
    from lm_eval_abo.cli import main

    assert main(["import", "promptfoo", str(config), "-o", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "'pi'" in err[0] and "Traceback" not in err[0]


def test_import_keeps_keys_and_credentials_out(tmp_path):
    config = tmp_path / "promptfooconfig.yaml"
    config.write_text(yaml.safe_dump({
        "prompts": ["Say hi.\n\nQ: {{q}}\nA:"], "env": {"OPENAI_API_KEY": SECRET},
        "providers": [{"id": "openai:chat:gpt-4o-mini", "config": {"apiKey": SECRET, "apiBaseUrl": "http://me:pw@127.0.0.1:8/v1"}}],
        "tests": [{"vars": {"q": str(i)}, "assert": [{"type": "equals", "value": str(i)}]} for i in range(3)],
    }))
    path, imported = import_config(config, tmp_path / "tasks")
    written = path.read_text() + path.with_suffix(".jsonl").read_text()
    assert SECRET not in written and "me:pw" not in written
    assert imported.lm_eval["model_args"].startswith("model=gpt-4o-mini,base_url=http://127.0.0.1:8/v1/chat/completions")


@pytest.mark.parametrize("ref", ["file://../outside.txt", "file:///etc/hostname"])
def test_file_references_stay_inside_the_config_directory(tmp_path, ref):
    (tmp_path / "outside.txt").write_text("secret")
    config = tmp_path / "inner" / "promptfooconfig.yaml"
    config.parent.mkdir()
    config.write_text(yaml.safe_dump({"prompts": [ref], "tests": [{"vars": {"q": str(i)}} for i in range(3)]}))
    with pytest.raises(AboError, match="outside the config's directory"):
        read_config(config)


def test_config_yaml_is_read_safely(tmp_path):
    config = tmp_path / "promptfooconfig.yaml"
    config.write_text("prompts: !!python/object/apply:os.system ['echo pwned']\n")
    with pytest.raises(AboError, match="not valid YAML"):
        read_config(config)


# --- export (no model) --------------------------------------------------------------------------


def test_export_escapes_the_prompt_and_keeps_secrets_out(tmp_path):
    target = {"model": "local-completions",
              "model_args": f"model=gemma-3-270m,base_url=http://user:pw@127.0.0.1:9/v1/completions,api_key={SECRET}"}
    artifact = hostile_artifact(tmp_path / "best.yaml", target, gen_kwargs={"max_gen_toks": 48})
    out = tmp_path / "promptfooconfig.yaml"
    config = export(artifact, out, ExportOptions(limit=3, api_key_env="MY_KEY"), HarnessSettings())
    text = out.read_text()
    assert SECRET not in text and "user:pw" not in text
    provider = config["providers"][0]
    assert provider["id"] == "openai:completion:gemma-3-270m"
    assert provider["config"] == {"temperature": 0.0, "max_tokens": 48, "stop": ["\n\nQ:", "\nQ:"],
                                  "apiBaseUrl": "http://127.0.0.1:9/v1", "apiKeyEnvar": "MY_KEY"}
    raw = config["prompts"][0]["raw"]
    assert "{{input}}" in raw and "{{ 7*7 }}" not in raw and "{% raw %}" not in raw
    assert config["tags"]["abo_prompt_sha256"] == store.load(artifact).prompt.sha256()
    assert [t["vars"]["target"] for t in config["tests"]] == [str(d["target"]) for d in requests_docs(artifact, 3)]
    assert yaml.safe_load(text) == config


def requests_docs(artifact: Path, limit: int) -> list[dict]:
    return [r.doc for r in exported_requests(artifact, ExportOptions(limit=limit), HarnessSettings())[1]]


@pytest.mark.parametrize("chat", [False, True], ids=["completion", "chat"])
def test_promptfoo_renders_exactly_what_lm_eval_sends(tmp_path, chat):
    """The real promptfoo CLI with its echo provider: every rendered prompt equals lm-eval's request,
    hostile text included, and the exact_match assertion grades the echoed prompt as lm-eval would."""
    artifact = hostile_artifact(tmp_path / "best.yaml", {"model": "abo-embedded", "model_args": "model=gemma-3-270m"})
    out = tmp_path / "promptfooconfig.yaml"
    options, harness = ExportOptions(limit=4), HarnessSettings(apply_chat_template=chat)
    export(artifact, out, options, harness)
    found = run_promptfoo(with_echo(out), tmp_path / "results.json")
    _, reqs = exported_requests(artifact, options, harness, chat)
    assert len(found["results"]) == len(reqs) == 4
    for row in sorted(found["results"], key=lambda r: r["testIdx"]):
        raw = row["prompt"]["raw"]
        assert (json.loads(raw) if chat else raw) == reqs[row["testIdx"]].context
        for text in HOSTILE:
            assert text in raw or json.dumps(text)[1:-1] in raw
        # the echoed prompt ends with the demonstration's "So the answer is 2"
        assert row["success"] == (reqs[row["testIdx"]].doc["target"] == "2"), row["gradingResult"]


def test_imported_task_exports_back_with_its_assertions(tmp_path):
    """import -> export -> promptfoo (echo): a one-line prompt, vars as promptfoo renders them (`{{ 7*7 }}`
    becomes 49) and assertion values (rendered with the unrendered vars, as promptfoo does) reach
    promptfoo literally, and promptfoo grades with the original assertions as lm-eval's pass_rate does."""
    config = tmp_path / "promptfooconfig.yaml"
    questions = ["3/4 of 8", "{{ 7*7 }}", "{{ ''.__class__ }}", "see file://y.py", "a stray {", "plain"]
    config.write_text(yaml.safe_dump({
        "prompts": ["Repeat: {{q}}"], "providers": ["echo"],
        "defaultTest": {"assert": [{"type": "contains", "value": "{{q}}"}]},
        "tests": [{"vars": {"q": q}, "assert": [{"type": "starts-with" if i % 2 else "not-starts-with", "value": "Repeat"}]}
                  for i, q in enumerate(questions)],
    }))
    found, task, reqs = imported_round_trip(config, tmp_path, "echoed")
    assert len(found["results"]) == len(reqs) == 4 and found["stats"]["errors"] == 0
    for row in found["results"]:
        req = reqs[row["testIdx"]]
        assert row["prompt"]["raw"] == req.context == f"Repeat: {req.doc['q']}"
        assert row["success"] == (task.process_results(req.doc, [row["response"]["output"]])["pass_rate"] == 1.0)
    assert {r["success"] for r in found["results"]} == {True, False}


# --- with the real models -----------------------------------------------------------------------


@pytest.mark.slow
def test_promptfoo_round_trip_equals_lm_eval(gemma_server, tmp_path):
    """lm-eval (`local-completions`) and promptfoo (`openai:completion`) against the same server, on the
    same examples: same prompts byte for byte, same replies, same pass/fail, same score."""
    n = 8
    target = {"model": "local-completions", "model_args": local_completions_args(gemma_server) + f",api_key={SECRET}"}
    artifact = hostile_artifact(tmp_path / "best.yaml", target, gen_kwargs={"max_gen_toks": 48})
    run_cli(bin_path("lm_eval"), "--model", "local-completions", "--model_args", local_completions_args(gemma_server),
            "--include_path", str(tasks_dir()), "--tasks", TASK, "--limit", str(n), "--gen_kwargs", "max_gen_toks=48",
            "--metadata", json.dumps({"abo_prompt": str(artifact)}), "--output_path", str(tmp_path / "lm_eval"),
            "--log_samples", cwd=tmp_path)
    lm_eval_score = results_file(tmp_path / "lm_eval")["results"][TASK]["exact_match,answer"]
    by_doc = {row["doc_id"]: row for row in samples(tmp_path / "lm_eval", TASK)}

    out = tmp_path / "promptfooconfig.yaml"
    run_cli(bin_path("lm-eval-abo"), "export", "promptfoo", str(artifact), "--limit", str(n), "-o", str(out), cwd=tmp_path)
    assert SECRET not in out.read_text()
    found = run_promptfoo(out, tmp_path / "promptfoo.json")
    assert found["stats"]["errors"] == 0, [r.get("error") for r in found["results"] if r.get("error")]

    differences = []
    for row in sorted(found["results"], key=lambda r: r["testIdx"]):
        ref = by_doc[row["testIdx"]]
        sent, reply = ref["arguments"]["gen_args_0"]["arg_0"], ref["resps"][0][0]
        for text in HOSTILE:
            assert text in row["prompt"]["raw"], f"{text!r} did not reach the model literally"
        why = []
        if row["prompt"]["raw"] != sent:
            why.append("prompt differs")
        if row["response"]["output"] != reply:
            why.append(f"reply {row['response']['output']!r} != lm-eval's {reply!r}")
        if row["success"] != (ref["exact_match"] == 1.0):
            why.append(f"promptfoo {row['gradingResult']['reason']} but lm-eval exact_match={ref['exact_match']}")
        if why:
            differences.append(f"example {row['testIdx']} ({ref['doc']['id']}): " + "; ".join(why))
    pass_rate = found["stats"]["successes"] / len(found["results"])
    assert not differences and pass_rate == lm_eval_score, (pass_rate, lm_eval_score, differences)


@pytest.mark.slow
def test_import_optimize_then_evaluate_with_lm_eval_and_promptfoo(gemma_server, tmp_path):
    """The hand-written promptfoo config becomes a task; `optimize` runs on it with the embedded models
    (tiny budget); the optimized prompt is evaluated by the stock lm_eval CLI and, exported back, by
    promptfoo, whose pass rate equals lm-eval's pass_rate on the same examples."""
    tasks = tmp_path / "tasks"
    run_cli(bin_path("lm-eval-abo"), "import", "promptfoo", str(CAPITALS), "-o", str(tasks), "--task-name", "capitals", cwd=tmp_path)
    run_cli(bin_path("lm-eval-abo"), "optimize", "--include_path", str(tasks), "--task", "capitals", "--method", "ape",
            "--rounds", "1", "--beam", "1", "--train-limit", "3", "--dev-limit", "3", "--test-limit", "3", "--minibatch", "2",
            "--method-args", "paraphrases=1", "--output", "runs", "--optimizer-cache", str(tmp_path / "cache"), cwd=tmp_path)
    run_dir = tmp_path / "runs" / "capitals" / "ape"
    artifact = store.load(run_dir / "best.yaml", task="capitals")
    assert artifact.scores["test"]["metric"] == "pass_rate,none" and artifact.scores["test"]["n"] == 3
    assert artifact.usage["optimizer"]["calls"] >= 1 and [r["round"] for r in artifact.trace] == [0, 1]
    test_ids = artifact.splits["test"]  # the held-out documents (lm_eval runs them all), after train and dev were carved out

    run_cli(bin_path("lm_eval"), "--model", "local-completions", "--model_args", local_completions_args(gemma_server),
            "--include_path", str(tasks), "--tasks", "capitals",
            "--metadata", json.dumps({"abo_prompt": str(run_dir / "best.yaml")}), "--output_path", str(tmp_path / "lm_eval"),
            "--log_samples", cwd=tmp_path)
    results = results_file(tmp_path / "lm_eval")
    assert results["configs"]["capitals"]["metadata"]["abo"]["prompt_sha256"] == artifact.prompt.sha256()
    by_id = {row["doc"]["id"]: row for row in samples(tmp_path / "lm_eval", "capitals")}
    held_out = [by_id[i] for i in test_ids]

    out = tmp_path / "promptfooconfig.yaml"
    run_cli(bin_path("lm-eval-abo"), "export", "promptfoo", str(run_dir / "best.yaml"), "--include_path", str(tasks),
            "--api-base", f"{gemma_server.base_url}", "-o", str(out), cwd=tmp_path)
    found = run_promptfoo(out, tmp_path / "promptfoo.json")
    outcomes = [(r["response"]["output"], r["success"]) for r in sorted(found["results"], key=lambda r: r["testIdx"])]
    expected = [(row["resps"][0][0], row["pass_rate"] == 1.0) for row in held_out]
    assert outcomes == expected and found["stats"]["successes"] == sum(row["pass_rate"] for row in held_out)
