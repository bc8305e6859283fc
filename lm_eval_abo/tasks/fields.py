"""A prompt in lm-eval's own task fields, for any task.

The instruction block (instruction, numbered procedure, answer format) becomes the task's `description`
(placement "system": the system message under a chat template, the top of the prompt otherwise) or is
put before the question in `doc_to_text` (placement "user"); the demonstrations become few-shot samples
(`fewshot_config.samples`, rendered by the task's own `doc_to_text` and delimiters); the answer prefix
becomes `gen_prefix`. A part the prompt leaves empty stays as the task has it, so the empty prompt is the
task exactly as written. Filters, metrics and generation settings are never touched.

lm-eval renders these fields as Jinja templates, so prompt text goes in through `literal`, which makes a
template that renders to the text itself: `{{ 7*7 }}` written by a model reaches the target as written.
"""

from __future__ import annotations

import copy
import re

from lm_eval_abo.artifact.prompt import Prompt
from lm_eval_abo.infra.errors import AboError

DEMO_FIELD = "demo_output"  # a demonstration's worked answer, in its few-shot sample


def literal(text: str) -> str:
    """A Jinja template that renders to `text` exactly. Jinja syntax starts only at `{`; a carriage return
    would be normalised; a bare field name (`answer`) would be read by lm-eval as that document field."""
    if re.fullmatch(r"\w+", text):
        return "{{ '" + text + "' }}"
    return text.replace("{", "{{ '{' }}").replace("\r", "{{ '\\r' }}")


def _strip_prefix(output: str, prefix: str) -> str:
    """lm-eval puts the answer prefix before every few-shot answer, so an answer starting with it loses it."""
    output, prefix = output.strip(), prefix.strip()
    return output[len(prefix):].lstrip() if prefix and output.startswith(prefix) else output


def apply(config: dict, prompt: Prompt) -> dict:
    """A copy of the task config `config` (as lm-eval loads it) carrying `prompt`."""
    config = copy.deepcopy(config)
    block = prompt.instruction_block()
    if block and prompt.placement == "system":
        config["description"] = literal(block + "\n\n")  # lm-eval joins parts with no separator
    elif block:
        question = config.get("doc_to_text")
        if not isinstance(question, str):
            raise AboError(f"{config.get('task')}: its doc_to_text is code, so an instruction cannot be put before the "
                           "question; use placement system")
        shots = dict(config.get("fewshot_config") or {})
        shots.setdefault("doc_to_text", question)  # the demonstrations keep the plain question
        config["fewshot_config"] = shots
        as_template = "{{" + question + "}}" if re.fullmatch(r"\w+", question) else question  # a field name
        config["doc_to_text"] = literal(block + "\n\n") + as_template
    if prompt.answer_prefix:
        config["gen_prefix"] = literal(prompt.answer_prefix)
    if prompt.demonstrations:
        worked = any(demo.output for demo in prompt.demonstrations)
        samples = [{**demo.doc, **({DEMO_FIELD: _strip_prefix(demo.output, prompt.answer_prefix)} if worked else {})}
                   for demo in prompt.demonstrations]
        shots = {k: v for k, v in (config.get("fewshot_config") or {}).items() if k not in ("split", "samples", "sampler")}
        shots.update(sampler="first_n", split=None, samples=samples)
        if worked:
            shots["doc_to_target"] = "{{" + DEMO_FIELD + "}}"
        config["fewshot_config"] = shots
        config["fewshot_split"] = None
        config["num_fewshot"] = len(samples)
    return config


def task_config(base: dict, prompt: Prompt, name: str, split: str | None = None) -> dict:
    """`apply`, renamed `name`, evaluating the task split `split` (default: the task's own)."""
    return {**apply(base, prompt), "task": name, **({"test_split": split} if split else {})}
