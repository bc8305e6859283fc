"""`lm-eval-abo export promptfoo`: an optimized prompt as a promptfoo config that sends the target the
exact text lm-eval sends and grades the reply as lm-eval's metric does.

lm-eval builds the prompt: the artifact's task is loaded with the artifact as its prompt and lm-eval
assembles each request (description, demonstrations as few-shot examples, question template, answer
prefix, separators; or the chat messages under --apply_chat_template). The document's fields become
`{{var}}` placeholders, found by rendering a document whose fields are markers, and every exported
example is checked: the template filled with its fields must equal lm-eval's request byte for byte.
Literal text and vars are escaped for promptfoo's Nunjucks (see `syntax`), so an instruction holding
`{{ 7*7 }}` reaches the model as written. Grading: the task's regex filter and exact_match as a
JavaScript assertion, or, for a task imported from promptfoo, its original assertions. Secrets never
reach the file: the API key is named by an environment variable, model_args are redacted.
"""

from __future__ import annotations

import json
import re
import string
from dataclasses import dataclass
from pathlib import Path

from lm_eval_abo.artifact import store
from lm_eval_abo.config import HarnessSettings
from lm_eval_abo.infra.errors import AboError
from lm_eval_abo.infra.files import write_text_atomic
from lm_eval_abo.infra.redact import redact_arg_string
from lm_eval_abo.promptfoo import PROMPTFOO_VERSION, assertions, providers, syntax
from lm_eval_abo.promptfoo.providers import without_credentials
from lm_eval_abo.run.session import artifact_session
from lm_eval_abo.tasks import fields
from lm_eval_abo.tasks.built import Harness, messages_template, quiet_lm_eval, set_up
from lm_eval_abo.tasks.configs import dump_task_yaml
from lm_eval_abo.tasks.splits import LOGICAL

_MARK = re.compile("\ue000([A-Za-z_]\\w*)\ue001")  # a document field inside a rendered prompt

# lm-eval's answer extraction (the task's filter pipeline) and exact_match, step for step (see
# lm_eval.filters.extraction.RegexFilter and lm_eval.api.metrics.exact_match_hf_evaluate). The code is
# the same for every task (its settings are in the assertion's `config`, which promptfoo does not
# render) and holds no Nunjucks tag opener, since promptfoo renders assertion values.
EXACT_MATCH_JS = """\
const c = context.config;
const unescape = (s) => String(s ?? "").replace(/\\{\\{ '([\\s\\S])' \\}\\}/g, "$1");
const pick = (m) => (m.length === 1 ? m[0] : m.length === 2 ? (m[1] ?? "") : (m.slice(1).find((g) => g) ?? null));
let answer = String(output ?? "");
for (const step of c.filters) {
  if (step.function === "regex") {
    const found = [...answer.matchAll(new RegExp(step.pattern, step.flags + "g"))].map(pick);
    const i = step.group_select < 0 ? found.length + step.group_select : step.group_select;
    const hit = i >= 0 && i < found.length ? found[i] : null;
    answer = found.length === 0 ? step.fallback : (hit ?? step.fallback).trim();
  } else if (step.function === "lowercase") answer = answer.toLowerCase();
  else if (step.function === "uppercase") answer = answer.toUpperCase();
}
const norm = (s) => {
  let t = s;
  for (const r of c.regexes_to_ignore) t = t.replace(new RegExp(r.pattern, r.flags + "g"), "");
  if (c.ignore_case) t = t.toLowerCase();
  if (c.ignore_punctuation) t = [...t].filter((ch) => !c.punctuation.includes(ch)).join("");
  if (c.ignore_numbers) t = t.replace(/[0-9]/g, "");
  return t;
};
const gold = unescape(context.vars[c.gold_var]);
const pass = norm(answer) === norm(gold);
return { pass, score: pass ? 1 : 0, reason: "answer " + JSON.stringify(answer) + (pass ? " = " : " != ") + "gold " + JSON.stringify(gold) };
"""


@dataclass
class ExportOptions:
    split: str = "test"
    limit: int | None = None
    provider: str | None = None  # a promptfoo provider id, instead of the one mapped from the target
    api_base: str | None = None  # an OpenAI-compatible server's base URL (…/v1)
    api_key_env: str | None = None  # the environment variable holding the API key


@dataclass
class Request:
    """One exported example: its document and what lm-eval sends for it."""

    doc: dict
    context: str | list[dict]  # the prompt text, or the chat messages
    gen_kwargs: dict


def load_task(artifact: store.Artifact, options: ExportOptions, harness: HarnessSettings):
    """The artifact's task with its prompt, as lm-eval builds it on the run's split, and the documents of the
    split to export."""
    if options.split not in LOGICAL:
        raise AboError(f"--split must be one of {', '.join(LOGICAL)}, got {options.split!r}")
    bridge = artifact_session(artifact, harness).bridge
    part = bridge.splits[options.split]
    with quiet_lm_eval():
        config = fields.task_config(bridge.base_config, artifact.prompt, artifact.task, part.split)
        task = bridge.manager.load([config])["tasks"][artifact.task]
    if task.OUTPUT_TYPE != "generate_until":
        raise AboError(f"{artifact.task} is a {task.OUTPUT_TYPE} task; only generate_until tasks export to promptfoo")
    set_up(task, bridge.harness)
    indices = list(part.indices[: options.limit] if options.limit else part.indices)
    return task, bridge.harness, indices


def _render_kwargs(harness: Harness, chat: bool) -> dict:
    return {**harness.evaluate_kwargs(), "apply_chat_template": chat, "chat_template": messages_template if chat else None}


def requests(task, harness: Harness, indices: list[int], chat: bool) -> list[Request]:
    """lm-eval's own requests for the documents of the split to export."""
    with quiet_lm_eval():
        task.build_all_requests(samples=indices, rank=0, world_size=1, **_render_kwargs(harness, chat))
    out = []
    for inst in task.instances:
        context, gen_kwargs = inst.arguments
        out.append(Request(dict(inst.doc), json.loads(context) if chat else context, dict(gen_kwargs)))
    if not out:
        raise AboError("the split has no examples")
    return out


def var_fields(doc: dict) -> list[str]:
    """The document fields promptfoo gets as vars (not the prompt parts an abo task adds)."""
    internal = {fields.DEMO_FIELD, assertions.GRADING_FIELD}
    return [k for k in doc if not k.startswith("abo_") and k not in internal]


def template(task, doc: dict, harness: Harness, chat: bool) -> list[str] | list[dict]:
    """The prompt with each text field of the document as a placeholder: [text, name, text, ...], or
    per chat message {"role", "parts"}."""
    marked = {k: (f"\ue000{k}\ue001" if k in var_fields(doc) and isinstance(v, str) else v) for k, v in doc.items()}
    rendered = task.fewshot_context(marked, num_fewshot=task.config.num_fewshot or 0, gen_prefix=task.doc_to_prefix(marked),
                                    **_render_kwargs(harness, chat))

    def parts(text: str) -> list[str]:
        split = _MARK.split(text)
        if any("\ue000" in p or "\ue001" in p for p in split[::2]):
            raise AboError(f"{task.config.task}: its prompt transforms a document field; only fields used as they are can become promptfoo vars")
        return split

    if chat:
        return [{"role": m["role"], "parts": parts(m["content"])} for m in json.loads(rendered)]
    return parts(rendered)


def _fill(parts: list[str], doc: dict) -> str:
    return "".join(p if i % 2 == 0 else str(doc[p]) for i, p in enumerate(parts))


def check_template(shape, reqs: list[Request], chat: bool) -> None:
    """Every example's lm-eval request must be the template filled with its document's fields."""
    for req in reqs:
        if chat:
            filled = [{"role": m["role"], "content": _fill(m["parts"], req.doc)} for m in shape]
        else:
            filled = _fill(shape, req.doc)
        if filled != req.context:
            raise AboError(f"example {req.doc.get('id', '?')}: lm-eval's prompt is not the template filled with the document's "
                           "fields (a field transformed by a filter or condition?); cannot export it faithfully")


def promptfoo_prompt(shape, chat: bool) -> str:
    """The prompt for promptfoo: literal text escaped, fields as {{name}}."""
    if chat:
        return json.dumps([{"role": m["role"], "content": syntax.jinja_template(m["parts"])} for m in shape], ensure_ascii=False, indent=2)
    text = syntax.jinja_template(shape)
    if re.match(r"[a-z]+://|package:|exec:", text):
        text = syntax.printed(text[0]) + text[1:]  # promptfoo would read it as a file reference
    if "\n" not in text:
        text += "{{ '' -}}\n"  # promptfoo reads a one-line prompt as a file path; the tag prints nothing and eats the newline
    try:
        json.loads(text)
    except ValueError:
        return text
    raise AboError("the prompt is valid JSON on its own, which promptfoo would read as chat messages; cannot export it as text")


def promptfoo_vars(req: Request, chat: bool, gold: tuple[str, str] | None) -> dict:
    values = {k: syntax.js_str(req.doc[k]) for k in var_fields(req.doc)}
    if gold and gold[0] not in values:
        values[gold[0]] = gold[1]
    if chat:
        for name, value in values.items():
            problem = syntax.chat_var_problem(value, values)
            if problem:
                raise AboError(f"example {req.doc.get('id', '?')}: var {name} {problem}; cannot export it to a chat prompt")
        return values
    return {k: syntax.escape_var(v) for k, v in values.items()}


def _is_promptfoo_graded(task) -> bool:
    fn = task.config.process_results
    modules = (assertions.__name__, assertions.__name__.rpartition(".")[0] + ".hooks")
    return getattr(fn, "__module__", "") in modules and getattr(fn, "__name__", "") == "process_results"


def gold_answers(task, reqs: list[Request]) -> tuple[str, list[str]]:
    """(var name, gold answer per example): the field doc_to_target names, else an added var abo_gold."""
    golds = [str(task.doc_to_target(r.doc)) for r in reqs]
    name = task.config.doc_to_target
    if isinstance(name, str) and all(name in r.doc and str(r.doc[name]) == g for r, g in zip(reqs, golds)):
        return name, golds
    return "abo_gold", golds


def exact_match_assertion(task, gold_name: str) -> dict:
    """The task's first filter pipeline and exact_match, as a JavaScript assertion."""
    where = f"{task.config.task}"
    metric = dict((task.config.metric_list or [{}])[0])
    if metric.get("metric") != "exact_match":
        raise AboError(f"{where}: its metric {metric.get('metric')!r} has no promptfoo export (exact_match and promptfoo assertions have)")
    filters = task.config.filter_list or []
    steps = []
    for step in (filters[0]["filter"] if filters else []):
        fn = step.get("function")
        if fn == "regex":
            pattern, flags = syntax.python_regex_to_js(step.get("regex_pattern", r"#### (\-?[0-9\.\,]+)"), f"{where}: filter regex")
            steps.append({"function": "regex", "pattern": pattern, "flags": flags, "group_select": int(step.get("group_select", 0)),
                          "fallback": step.get("fallback", "[invalid]")})
        elif fn in ("lowercase", "uppercase"):
            steps.append({"function": fn})
        elif fn != "take_first":
            raise AboError(f"{where}: the filter {fn!r} has no promptfoo export (regex, take_first, lowercase, uppercase have)")
    ignore = []
    for pattern in metric.get("regexes_to_ignore") or []:
        source, flags = syntax.python_regex_to_js(pattern, f"{where}: regexes_to_ignore")
        ignore.append({"pattern": source, "flags": flags})
    config = {"filters": steps, "gold_var": gold_name, "regexes_to_ignore": ignore, "punctuation": string.punctuation,
              **{k: bool(metric.get(k, False)) for k in ("ignore_case", "ignore_punctuation", "ignore_numbers")}}
    return {"type": "javascript", "value": EXACT_MATCH_JS, "config": config, "metric": "exact_match"}


def _escaped_assertion(assertion: dict) -> dict:
    """An imported assertion for promptfoo, which renders assertion values with Nunjucks."""
    if assertion.get("type") == "assert-set":
        return {**assertion, "assert": [_escaped_assertion(a) for a in assertion["assert"]]}
    assertion = {k: v for k, v in assertion.items() if k not in ("grader", "embedder", "factuality")}  # the import's own keys
    if "value" not in assertion:
        return assertion
    value = assertion["value"]
    if isinstance(value, list):  # promptfoo renders each text item of a list
        return {**assertion, "value": [syntax.escape_literal(v) if isinstance(v, str) else v for v in value]}
    return {**assertion, "value": syntax.escape_literal(value) if isinstance(value, str) else value}


def _target_text(target: dict) -> str:
    """The target model and its arguments, secrets masked and credentials dropped from URLs."""
    args = without_credentials(redact_arg_string(str(target.get("model_args", ""))))
    return f"{target.get('model', '')} {args}".strip() or "-"


def export(artifact_path: str | Path, output: str | Path, options: ExportOptions, harness: HarnessSettings) -> dict:
    """Write the promptfoo config; returns it."""
    artifact_path = Path(artifact_path)
    artifact = store.load(artifact_path)
    chat = harness.apply_chat_template or artifact.target.get("model") in providers.CHAT_BACKENDS
    task, harness, indices = load_task(artifact, options, harness)
    reqs = requests(task, harness, indices, chat)
    shape = template(task, reqs[0].doc, harness, chat)
    check_template(shape, reqs, chat)
    promptfoo_graded = _is_promptfoo_graded(task)
    gold_name, golds = gold_answers(task, reqs)
    tests = []
    for i, req in enumerate(reqs):
        gold = None if promptfoo_graded else (gold_name, golds[i])
        test = {"description": str(req.doc.get("id", f"{options.split}[{i}]")), "vars": promptfoo_vars(req, chat, gold)}
        if promptfoo_graded:
            grading = json.loads(req.doc[assertions.GRADING_FIELD])
            test["assert"] = [_escaped_assertion(a) for a in grading["assert"]]
            scores = [a["factuality"] for a in grading["assert"] if a.get("factuality")]
            if scores:  # the test's own factuality scores (kept on the assertions by the import)
                test["options"] = {"factuality": scores[0]}
            if grading.get("threshold"):
                test["threshold"] = grading["threshold"]
        tests.append(test)
    sha = artifact.prompt.sha256()
    config = {
        "description": f"{artifact.task}: prompt optimized by {artifact.method} (lm-eval-abo), {options.split} split, {len(tests)} examples",
        "tags": {
            "abo_task": artifact.task, "abo_method": artifact.method, "abo_artifact": str(artifact_path),
            "abo_artifact_sha256": store.file_sha256(artifact_path), "abo_prompt_sha256": sha,
            "abo_target": _target_text(artifact.target), "abo_optimizer": str(artifact.optimizer.get("model", "-")),
            "abo_created": artifact.created,
            "abo_split": options.split, "abo_examples": str(len(tests)),
            "abo_metric": f"{assertions.METRIC} (promptfoo assertions)" if promptfoo_graded else "exact_match (lm-eval filter + metric)",
            **({"abo_test_score": str(artifact.scores["test"].get("value"))} if "test" in artifact.scores else {}),
        },
        "prompts": [{"raw": promptfoo_prompt(shape, chat), "label": f"{artifact.method}:{sha[:12]}"}],
        "providers": [providers.from_lm_eval(artifact.target, reqs[0].gen_kwargs, chat, options.provider, options.api_base,
                                             options.api_key_env)],
        "defaultTest": {"assert": [] if promptfoo_graded else [exact_match_assertion(task, gold_name)]},
        "tests": tests,
    }
    write_text_atomic(output, _header(artifact_path, artifact, config) + dump_task_yaml(config))
    return config


def _header(artifact_path: Path, artifact: store.Artifact, config: dict) -> str:
    provider_config = config["providers"][0]["config"]
    key_env = provider_config.get("apiKeyEnvar", "OPENAI_API_KEY")
    lines = [
        f"# promptfoo config written by `lm-eval-abo export promptfoo` from {artifact_path} ({artifact.task}, {artifact.method}).",
        "# promptfoo sends the target exactly the text lm-eval sends (checked for every test) and grades as lm-eval does.",
        f"# Run: PROMPTFOO_DISABLE_TELEMETRY=1 npx promptfoo@{PROMPTFOO_VERSION} eval -c <this file> --no-cache",
        f"# The API key comes from the environment variable {key_env} (any value for a local server).",
    ]
    if "apiBaseUrl" not in provider_config:
        lines.append("# No server URL is set: set OPENAI_BASE_URL (for the embedded model: the URL `lm-eval-abo serve` prints), or re-export with --api-base.")
    return "\n".join(lines) + "\n"
