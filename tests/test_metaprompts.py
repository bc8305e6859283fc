import hashlib
import subprocess
import sys
from pathlib import Path

import jinja2
import pytest

from lm_eval_abo.infra import metaprompts

HOSTILE = "{{ 7*7 }} {% raw %} {{ ''.__class__.__mro__ }} {"


def test_every_template_is_a_file_with_a_stable_hash():
    names = sorted(p.stem for p in Path(metaprompts.templates_dir()).glob("*.j2"))
    assert {"paraphrase", "apo_gradient", "opro", "abo_procedure", "abo_locate", "abo_revise"} <= set(names)
    paraphrase = metaprompts.template_sha256("paraphrase")
    by_hand = hashlib.sha256((Path(metaprompts.templates_dir()) / "paraphrase.j2").read_bytes()).hexdigest()
    assert paraphrase == by_hand == metaprompts.template_sha256("paraphrase"), "the file's sha256, the same twice"
    other = subprocess.run([sys.executable, "-c", "from lm_eval_abo.infra import metaprompts; "
                            "print(metaprompts.template_sha256('paraphrase'))"], capture_output=True, text=True, check=True)
    assert other.stdout.strip() == paraphrase, "the same in another process (no salted hash)"
    assert metaprompts.template_sha256("apo_gradient") != paraphrase
    assert metaprompts.hashes(["paraphrase", "apo_gradient"]) == {
        "apo_gradient": metaprompts.template_sha256("apo_gradient"), "paraphrase": by_hand}


def test_untrusted_values_are_never_evaluated():
    [message] = metaprompts.render("paraphrase", instruction=HOSTILE)
    assert HOSTILE in message["content"] and "49" not in message["content"]
    errors = [{"question": HOSTILE, "output": HOSTILE, "answer": "x", "target": "y"}]
    [message] = metaprompts.render("apo_gradient", task_description=HOSTILE, instruction=HOSTILE, errors=errors, n=2)
    assert message["content"].count(HOSTILE) == 4


def test_a_missing_variable_is_an_error_not_an_empty_string():
    with pytest.raises(jinja2.UndefinedError):
        metaprompts.render("paraphrase")


def test_templates_run_sandboxed():
    env = metaprompts._environment(str(metaprompts.templates_dir()))
    assert isinstance(env, jinja2.sandbox.SandboxedEnvironment)
    with pytest.raises(jinja2.exceptions.SecurityError):
        env.from_string("{{ x.__class__.__mro__[1].__subclasses__() }}").render(x="")


def test_tagged_blocks():
    assert metaprompts.tagged("<prompt> a </prompt> and <PROMPT>b</PROMPT>", "prompt") == ["a", "b"]
    assert metaprompts.tagged("x <reason>cut off by the token lim", "reason") == ["cut off by the token lim"]
    assert metaprompts.tagged("no tags here", "prompt") == []
    assert metaprompts.tagged("<prompt></prompt>", "prompt") == []
