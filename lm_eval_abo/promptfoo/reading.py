"""Reading a promptfoo config for `lm-eval-abo import promptfoo`: the prompt, the provider and the tests
as promptfoo 0.120.0 would run them (prompts in `prompts`, providers and generation settings in
`providers`, tests in `cases`, templates in `nunjucks`).

Every problem is collected and refused in one error that lists them all (fewer than 3 tests included);
what is dropped on purpose is a note, and a config without assertions a warning. The config is read with
the safe YAML loader; `file://` references resolve only inside the config's directory; config text is
rendered only in the sandbox, never executed by lm-eval.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from lm_eval_abo.infra.errors import AboError
from lm_eval_abo.infra.files import read_yaml
from lm_eval_abo.promptfoo import nunjucks, providers
from lm_eval_abo.promptfoo.assertions import GRADING_FIELD, base_type
from lm_eval_abo.promptfoo.cases import PROMPT_FIELD, Cases
from lm_eval_abo.promptfoo.files import deref
from lm_eval_abo.promptfoo.graded import GRADED_TYPES
from lm_eval_abo.promptfoo.grader import DEFAULT_EMBEDDER
from lm_eval_abo.promptfoo.similarity import EMBEDDING_TYPES, RELEVANCE
from lm_eval_abo.promptfoo.prompts import Prompt, allowed, chat_messages, read_prompts
from lm_eval_abo.promptfoo.syntax import PLACEHOLDER

# Keys that do not change what is asked or how it is graded (reporting, sharing, concurrency, env, labels).
IGNORED_KEYS = {"description", "tags", "providers", "prompts", "tests", "defaultTest", "outputPath", "evaluateOptions",
                "commandLineOptions", "sharing", "env", "metadata", "writeLatestResults", "$schema", "derivedMetrics",
                "assertionTemplates", "tracing"}
MIN_TESTS = 3


@dataclass
class Imported:
    """What was read from the promptfoo config (problems: everything that cannot be carried over)."""

    config: Path
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # what was dropped or chosen, one line each
    warnings: list[str] = field(default_factory=list)
    prompt: str = ""  # the question template (user turn) of the chosen prompt
    instruction: str = ""  # its leading paragraphs without template syntax (the part optimizers rewrite)
    system: str = ""  # a chat prompt's system message
    chat: bool = False
    prompt_label: str = ""
    other_prompts: int = 0
    provider: dict = field(default_factory=dict)  # {"id", "config"} of the first provider
    lm_eval: dict = field(default_factory=dict)  # {"model", "model_args", "chat", "key_env"} suggestion
    generation: dict = field(default_factory=dict)  # lm-eval generation_kwargs
    rows: list[dict] = field(default_factory=list)

    @property
    def doc_to_text(self) -> str:
        """The question template for lm-eval: the prompt's own placeholders, or its rendered text."""
        return self.prompt if nunjucks.is_plain(self.prompt) else "{{" + PROMPT_FIELD + "}}"


def split_prompt(template: str) -> tuple[str, str]:
    """(instruction, question template): the leading paragraphs before the first template tag are the
    instruction, if they join the rest with a blank line exactly as an abo prompt renders them."""
    first = nunjucks._OPENER.search(template)
    head = template[: first.start()] if first else template
    cut = head.rfind("\n\n")
    instruction = template[:cut] if cut > 0 else ""
    if not instruction or instruction != instruction.strip():
        return "", template
    return instruction, template[cut + 2:]


def _choose(imp: Imported, found: list[Prompt]) -> Prompt | None:
    chosen = [p for p in found if allowed(p, imp.provider.get("prompts"))]
    if found and not chosen:
        imp.problems.append(f"the provider {imp.provider.get('id')}'s prompts filter admits none of the prompts")
    if not chosen:
        return None
    prompt = chosen[0]
    imp.prompt_label, imp.other_prompts = prompt.label, len(found) - 1
    if imp.other_prompts:
        imp.notes.append(f"prompts: the task starts from the first, {prompt.label[:60]!r}; "
                         f"{imp.other_prompts} other prompt(s) are not imported")
    chat = chat_messages(prompt.raw, imp.problems)
    if chat is not None:
        imp.chat, (imp.system, imp.prompt) = True, chat
        if nunjucks.is_template(imp.system):
            imp.problems.append("a system message with template syntax (it is the instruction optimizers rewrite)")
        imp.instruction = imp.system
        if not imp.system:
            imp.instruction, imp.prompt = split_prompt(imp.prompt)
    else:
        imp.instruction, imp.prompt = split_prompt(prompt.raw)
    problem = nunjucks.problem(imp.prompt, "prompt")
    if problem:
        imp.problems.append(problem)
    return prompt


def _graded(asserts: list[dict]):
    for assertion in asserts:
        yield from _graded(assertion.get("assert") or []) if assertion["type"] == "assert-set" else [assertion]


def _grader_note(imp: Imported) -> None:
    """One line on who grades the model-graded assertions."""
    every = [a for row in imp.rows for a in _graded(json.loads(row[GRADING_FIELD])["assert"])]
    embedded = [a for a in every if base_type(a["type"])[0] in EMBEDDING_TYPES]
    if embedded:
        models = sorted({a["embedder"]["model"] for a in embedded if a.get("embedder")})
        who = [f"{', '.join(models)} (the config's)"] if models else []
        if any(not a.get("embedder") for a in embedded):
            who.append(f"{DEFAULT_EMBEDDER} (offline) where the config names no embedding provider (promptfoo's "
                       "default is OpenAI's text-embedding-3-large)")
        imp.notes.append(f"embedding assertions ({len(embedded)}): embedded by {'; '.join(who)}; a run's "
                         "--metadata abo_embedder overrides")
    found = [a for a in every if base_type(a["type"])[0] in GRADED_TYPES or base_type(a["type"])[0] in ("g-eval", RELEVANCE)]
    if not found:
        return
    mapped = sorted({a["grader"]["model"] for a in found if a.get("grader")})
    unmapped = sum(1 for a in found if not a.get("grader"))
    who = [f"{', '.join(mapped)} (the config's grader)"] if mapped else []
    if unmapped:
        who.append("the run's optimizer where the config names no grader (lm_eval: --metadata '{\"abo_grader\": MODEL}')")
    imp.notes.append(f"model-graded assertions ({len(found)}): graded by {'; '.join(who)}; a run's --metadata abo_grader "
                     "overrides; the grader's calls are the third line of the run's ledger")


def read_config(path: str | Path) -> Imported:
    """Read and check a promptfoo config; every unsupported feature is listed in one AboError."""
    path = Path(path)
    config = read_yaml(path)
    if not isinstance(config, dict):
        raise AboError(f"{path}: a promptfoo config must be a YAML mapping")
    base = path.parent.resolve()
    imp = Imported(config=path)
    unknown = sorted(set(config) - IGNORED_KEYS)
    if unknown:
        imp.problems.append("top-level keys " + ", ".join(unknown))
    config = deref(config, config, imp.problems)
    imp.provider, imp.lm_eval = providers.read_providers(config.get("providers"), imp.problems, imp.notes)
    prompt = _choose(imp, read_prompts(config.get("prompts"), base, imp.problems))
    if prompt is not None:
        chat = imp.chat or bool(imp.lm_eval.get("chat"))
        settings = {**(imp.provider.get("config") or {}), **prompt.config}
        imp.generation = providers.generation(imp.provider.get("id", "echo"), chat, settings, imp.problems)
        cases = Cases(base, prompt, imp.provider, imp.prompt, imp.chat, imp.problems, imp.notes)
        imp.rows = cases.rows(config) if not any(p.startswith("prompt:") for p in imp.problems) else []
        if imp.rows and nunjucks.is_plain(imp.prompt):
            missing = sorted(set(PLACEHOLDER.findall(imp.prompt)) - set(imp.rows[0]))
            if missing:
                imp.problems.append("prompt vars no test defines: " + ", ".join(missing))
    if len(imp.rows) < MIN_TESTS:
        imp.problems.append(f"{len(imp.rows)} test(s) after expansion; at least {MIN_TESTS} are needed for train, dev and test")
    if imp.rows:
        _grader_note(imp)
    if imp.rows and all(row[GRADING_FIELD].startswith('{"assert": []') for row in imp.rows):
        imp.warnings.append("no test has an assertion: every reply passes, so the pass rate is 1.0 whatever the prompt")
    imp.notes = list(dict.fromkeys(imp.notes))
    if imp.problems:
        raise AboError(f"{path}: cannot import: " + "; ".join(dict.fromkeys(imp.problems)))
    return imp
