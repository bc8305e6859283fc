"""promptfoo's code assertions (`python`, `javascript`) graded as the real promptfoo CLI grades them.

One config holds every case: its prompt is `{{ q }}` and its provider promptfoo's `echo`, so each reply
is the test's `q`. promptfoo runs it (its own Python bridge, its own JavaScript), the config is imported,
and each imported test is graded here on the same reply: pass/fail and score must agree case by case.
The cases are where the result kinds part ways: booleans, numbers with and without a threshold, a
GradingResult as a dict or as JSON text, `not-`, results promptfoo refuses, errors in inline code and in
files (a file's JavaScript error fails the whole test, a Python one only the assertion), the context.
"""

import json
import shutil

import pytest
import yaml
from promptfoo_cli import run_promptfoo

from lm_eval_abo.infra.errors import AboError
from lm_eval_abo.promptfoo import assertions, node
from lm_eval_abo.promptfoo.importer import import_config
from lm_eval_abo.promptfoo.reading import read_config

PY_FILE = '''import asyncio

def get_assert(output, context):
    return {"pass": len(output) > 3, "score": len(output) / 10, "reason": "length"}

def words(output, context):
    return len(output.split()) / 4

async def later(output, context):
    await asyncio.sleep(0)
    return context["vars"]["q"] == output

def broken(output, context):
    raise ValueError("no")
'''
JS_FILE = '''module.exports = (output, context) => output.length > 3 && context.vars.q === output;
module.exports.ratio = (output) => output.length / 10;
module.exports.broken = () => { throw new Error("no"); };
module.exports.text = () => "yes";
'''
MJS_FILE = "export default async function (output, context) { return { pass: true, score: 0.25, reason: context.prompt }; }\n"

P, JS = "python", "javascript"
# (reply, [assertions], test threshold or None)
CASES = [
    ("Paris", [{"type": P, "value": "output.startswith('P')"}], None),
    ("", [{"type": P, "value": "len(output)"}], None),
    ("Paris", [{"type": P, "value": "len(output) / 10", "threshold": 0.6}], None),
    ("Paris", [{"type": P, "value": "len(output) / 10", "threshold": 0.5}], None),
    ("Paris", [{"type": P, "value": "-1"}], None),
    ("Paris", [{"type": P, "value": "'TRUE'"}], None),
    ("Paris", [{"type": P, "value": "'0.7 apples'"}], None),
    ("Paris", [{"type": P, "value": "'{\"pass\": true, \"score\": 0.3, \"reason\": \"text\"}'", "threshold": 0.5}], None),
    ("Paris", [{"type": P, "value": "{'pass': True, 'score': 0.3, 'reason': 'r'}", "threshold": 0.5}], None),
    ("Paris", [{"type": P, "value": "{'pass': True, 'score': 1}"}], None),
    ("Paris", [{"type": P, "value": "{'pass_': True, 'score': 0.9, 'reason': 'r', 'named_scores': {}}"}], None),
    ("Paris", [{"type": P, "value": "{'pass': True, 'score': True, 'reason': 'r'}"}], None),
    ("Paris", [{"type": P, "value": "{'pass': True, 'score': 1, 'reason': 'r', 'comment': None}"}], None),
    ("Paris", [{"type": P, "value": "None"}], None),
    ("Paris", [{"type": P, "value": "[1, 2]"}], None),
    ("Paris", [{"type": P, "value": "float('nan')"}], None),
    ("Paris", [{"type": P, "value": "1 / 0"}], None),
    ("Paris", [{"type": "not-python", "value": "True"}], None),
    ("two words", [{"type": P, "value": "words = output.split()\nreturn len(words) == 2"}], None),
    ("two words", [{"type": P, "value": "  n = len(output.split())\n  return {'pass': n == 2, 'score': n / 4, 'reason': 'n'}"}], None),
    ("Paris", [{"type": P, "value": "context['vars']['q'] == output and context['prompt'] == output"}], None),
    ("Paris", [{"type": P, "value": "context['config']['min'] < len(output)", "config": {"min": 3}}], None),
    ("Paris", [{"type": P, "value": "file://check.py"}], None),
    ("Pa", [{"type": P, "value": "file://check.py", "threshold": 0.5}], None),
    ("one two three", [{"type": P, "value": "file://check.py:words"}], None),
    ("Paris", [{"type": P, "value": "file://check.py:later"}], None),
    ("Paris", [{"type": P, "value": "file://check.py:broken"}, {"type": "contains", "value": "P"}], 0.5),
    ("Paris", [{"type": JS, "value": "output.length > 3"}], None),
    ("Paris", [{"type": "not-javascript", "value": "output.length > 3"}], None),
    ("Paris", [{"type": JS, "value": "output.length / 10", "threshold": 0.6}], None),
    ("Paris", [{"type": "not-javascript", "value": "output.length / 10"}], None),
    ("Paris", [{"type": JS, "value": "({pass: false, score: 0.9, reason: 'as it is'})", "threshold": 0.1}], None),
    ("Paris", [{"type": JS, "value": "({pass: true, score: 0.2})"}], None),
    ("Paris", [{"type": JS, "value": "'yes'"}], None),
    ("Paris", [{"type": JS, "value": "output.nothing.here"}], None),
    ("Paris", [{"type": JS, "value": "Promise.resolve(output === 'Paris')"}], None),
    ("two words", [{"type": JS, "value": "const n = output.split(' ').length;\nreturn n === 2;"}], None),
    ("Paris", [{"type": JS, "value": "console.log('printed'); return context.vars.q === output && context.prompt === output"
                .replace("; ", ";\n")}], None),
    ("Paris", [{"type": JS, "value": "file://check.js"}], None),
    ("Paris", [{"type": JS, "value": "file://check.js:ratio", "threshold": 0.5}], None),
    ("Paris", [{"type": JS, "value": "file://check.js:text"}], None),
    ("Paris", [{"type": JS, "value": "file://check.mjs"}], None),
    ("Paris", [{"type": JS, "value": "file://check.js:broken"}, {"type": "contains", "value": "P"}], 0.5),
    ("Paris", [{"type": JS, "value": "false", "weight": 0}, {"type": P, "value": "False", "weight": 0},
               {"type": "contains", "value": "P"}], None),
    ("Paris", [{"type": JS, "value": "output.length / 10", "weight": 3}, {"type": P, "value": "0.2"}], 0.4),
]


def write_config(folder) -> None:
    (folder / "check.py").write_text(PY_FILE)
    (folder / "check.js").write_text(JS_FILE)
    (folder / "check.mjs").write_text(MJS_FILE)
    tests = [{"description": str(i), "vars": {"q": reply}, "assert": asserts, **({"threshold": t} if t else {})}
             for i, (reply, asserts, t) in enumerate(CASES)]
    (folder / "promptfooconfig.yaml").write_text(yaml.safe_dump({"prompts": ["{{ q }}"], "providers": ["echo"], "tests": tests},
                                                                 sort_keys=False, allow_unicode=True))


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    """[(case, promptfoo's (success, score), here (passed, score))] for every case."""
    if shutil.which("python") is None:
        pytest.skip("promptfoo runs Python assertions with `python`, which is not on PATH")
    folder = tmp_path_factory.mktemp("code")
    write_config(folder)
    found = run_promptfoo(folder / "promptfooconfig.yaml", folder / "results.json")
    theirs = {int(r["testCase"]["description"]): (r["success"], round(r["score"] or 0.0, 6)) for r in found["results"]}
    _, imported = import_config(folder / "promptfooconfig.yaml", folder / "tasks", task_name="code")
    out = []
    for i, row in enumerate(imported.rows):
        passed, score = assertions.grade(json.loads(row[assertions.GRADING_FIELD]), row["q"])
        out.append((CASES[i], theirs[i], (passed, round(score, 6))))
    return out


@pytest.mark.parametrize("kind", ["python", "javascript"])
def test_code_assertions_conform_to_promptfoo(graded, kind):
    mine = [g for g in graded if any(kind in a["type"] for a in g[0][1])]
    assert mine
    differences = [f"{case}: promptfoo {theirs}, here {here}" for case, theirs, here in mine if theirs != here]
    assert not differences, "\n".join(differences)
    # the corpus tells the result kinds apart: passes and failures, whole and partial scores
    assert {t[0] for _, t, _ in mine} == {True, False} and {t[1] for _, t, _ in mine} > {0.0, 1.0}


def test_one_node_worker_serves_the_run(graded):
    pid = node.worker().pid
    assert pid is not None
    assertions.grade({"assert": [{"type": "javascript", "value": "true"}]}, "x")
    assert node.worker().pid == pid, "the javascript assertions share one long-lived Node process"


def test_code_built_from_vars_is_refused(tmp_path):
    """promptfoo renders inline code with the vars; here the vars never become code."""
    config = tmp_path / "promptfooconfig.yaml"
    config.write_text(yaml.safe_dump({"prompts": ["{{ q }}"], "tests": [
        {"vars": {"q": str(i)}, "assert": [{"type": "python", "value": "output == '{{ q }}'"}]} for i in range(3)]}))
    with pytest.raises(AboError, match=r"template syntax .* context\['vars'\]"):
        read_config(config)


def test_code_files_stay_inside_the_config_folder(tmp_path):
    (tmp_path / "sub").mkdir()
    config = tmp_path / "sub" / "promptfooconfig.yaml"
    (tmp_path / "outside.py").write_text("def get_assert(output, context):\n    return True\n")
    config.write_text(yaml.safe_dump({"prompts": ["{{ q }}"], "tests": [
        {"vars": {"q": str(i)}, "assert": [{"type": "python", "value": "file://../outside.py"}]} for i in range(3)]}))
    with pytest.raises(AboError, match="outside the config's directory"):
        read_config(config)


def test_without_node_javascript_assertions_are_refused_in_one_line(tmp_path, monkeypatch):
    monkeypatch.setattr(node, "node_binary", lambda: None)
    config = tmp_path / "promptfooconfig.yaml"
    config.write_text(yaml.safe_dump({"prompts": ["{{ q }}"], "tests": [
        {"vars": {"q": str(i)}, "assert": [{"type": "javascript", "value": "output.length > 0"},
                                           {"type": "python", "value": "len(output) > 0"}]} for i in range(3)]}))
    with pytest.raises(AboError) as error:
        read_config(config)
    assert "\n" not in str(error.value) and "Node.js (`node`) is not on PATH" in str(error.value)
    config.write_text(yaml.safe_dump({"prompts": ["{{ q }}"], "tests": [
        {"vars": {"q": str(i)}, "assert": [{"type": "python", "value": "import sys\nsys.exit(3)"}]} for i in range(3)]}))
    rows = read_config(config).rows  # Python needs no Node; code that exits fails its assertion, as in promptfoo
    assert assertions.grade(json.loads(rows[0][assertions.GRADING_FIELD]), "x") == (False, 0.0)
