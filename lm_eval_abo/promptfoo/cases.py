"""The tests of a promptfoo config as documents: read, filtered, expanded and rendered as promptfoo
0.120.0 runs them.

- defaultTest (inline or `file://`) is merged into every test: its vars under the test's, its
  assertions first, its threshold unless the test has one;
- a test whose `prompts:` or `providers:` filter excludes the imported prompt or provider is left out;
- list-valued vars are expanded into the cross product (`generateVarCombinations`: a list whose first
  item is text, and a `file://` glob, give one test per item; tests are counted after expansion);
- vars that name files are loaded, and vars are resolved and rendered (see `nunjucks`);
- assertion values are rendered with the vars (code assertions keep their code as written, a
  `file://` script resolved to its path); cost and latency assertions are dropped (one note per type);
  types that cannot be graded here are refused with the reason;
- a test with code assertions also keeps what their `context` holds: the vars, the prompt, the test.
"""

from __future__ import annotations

import itertools
import json

from lm_eval_abo.infra.errors import AboError
from lm_eval_abo.infra.files import read_text, read_yaml
from lm_eval_abo.infra.redact import is_secret_key
from lm_eval_abo.promptfoo import checks, code, files, graded, nunjucks, providers, similarity
from lm_eval_abo.promptfoo.assertions import GRADING_FIELD, MODEL_TYPES, SUPPORTED, base_type, needs_env
from lm_eval_abo.promptfoo.jsregex import js_trim
from lm_eval_abo.promptfoo.prompts import allowed
from lm_eval_abo.promptfoo.syntax import js_str
from lm_eval_abo.tasks.synthetic import example_id

PROMPT_FIELD = "promptfoo_prompt"  # the rendered question, where the prompt is more than {{ name }} placeholders
RESERVED_FIELDS = {GRADING_FIELD, PROMPT_FIELD}
TEST_KEYS = {"description", "vars", "assert", "threshold", "metadata", "options", "prompts", "providers"}
OPTION_KEYS = {"provider", "rubricPrompt", "disableVarExpansion", "runSerially", "factuality"}
ASSERT_KEYS = {"type", "value", "weight", "metric", "description", "threshold", "config", "provider", "rubricPrompt"}
_UNREAD_SUFFIXES = (".py", ".js", ".mjs", ".cjs", ".ts", ".pdf", ".png", ".jpg", ".jpeg", ".gif", ".webp", ".mp3", ".wav", ".mp4")


def expand(values: dict, base, where: str) -> list[dict]:
    """promptfoo's generateVarCombinations."""
    axes = []
    for key, value in values.items():
        if isinstance(value, str) and value.startswith("file://"):
            choices = [files.relative_ref(base, p) for p in files.resolve(base, value, f"{where}.vars.{key}")]
        elif isinstance(value, list) and value and isinstance(value[0], str):
            choices = value
        else:
            choices = [value]
        axes.append([(key, choice) for choice in choices])
    return [dict(combination) for combination in itertools.product(*axes)]


def _load_var(value, base, where: str, problems: list[str]):
    """A var as renderPrompt loads it: a `file://` var becomes the file's text (trimmed), YAML as JSON."""
    if isinstance(value, str) and value.startswith("package:"):
        problems.append(f"{where} loads a package")
        return ""
    if not (isinstance(value, str) and value.startswith("file://")):
        return value
    path = files.resolve(base, value, where)[0]
    if path.suffix.lower() in _UNREAD_SUFFIXES:
        problems.append(f"a var that loads a {path.suffix} file (code, PDF or media)")
        return ""
    if path.suffix.lower() in (".yaml", ".yml"):
        return json.dumps(read_yaml(path), ensure_ascii=False, separators=(",", ":"))
    return js_trim(read_text(path))


def _asserts(asserts, where: str, problems: list[str], notes: list[str]) -> list[dict]:
    """The assertions promptfoo would grade with, as they can be graded here."""
    if asserts is None:
        return []
    if not isinstance(asserts, list):
        problems.append(f"{where}.assert is not a list")
        return []
    kept = []
    for assertion in asserts:
        kind = assertion.get("type") if isinstance(assertion, dict) else None
        if kind == "assert-set":
            kept.append({**{k: assertion[k] for k in ("weight", "threshold") if k in assertion}, "type": "assert-set",
                         "assert": _asserts(assertion.get("assert"), where, problems, notes)})
            continue
        if not isinstance(kind, str):
            problems.append(f"an assertion without a type ({json.dumps(assertion, default=str)[:80]})")
            continue
        base, _ = base_type(kind)
        if base in checks.DROPPED:
            notes.append(f"dropped: {base} assertions ({checks.DROPPED[base]})")
            continue
        if base not in SUPPORTED:
            problems.append(f"assert type {kind!r} ({checks.REFUSED.get(base, 'not a promptfoo assertion type')})")
            continue
        extra = set(assertion) - ASSERT_KEYS
        if extra:
            problems.append(f"assertion keys {', '.join(sorted(extra))} ({kind})")
        kept.append({k: assertion[k] for k in ("type", "value", "weight", "threshold", "config", "provider", "rubricPrompt")
                     if k in assertion})
    return kept


def _public(provider):
    """A grading provider as the exported config may show it: no keys, headers or URL credentials."""
    if isinstance(provider, dict):
        return {k: _public(v) for k, v in provider.items() if not is_secret_key(k) and k != "headers"}
    return providers.without_credentials(provider) if isinstance(provider, str) else provider


def with_graders(asserts: list[dict], options: dict, base, problems: list[str]) -> list[dict]:
    """Model-graded assertions with their grader (the assertion's provider, else the test's), mapped to litellm,
    their rubricPrompt (a file's text read) and the test's factuality scores, as promptfoo's getFinalTest gives them."""
    out = []
    for assertion in asserts:
        if assertion["type"] == "assert-set":
            out.append({**assertion, "assert": with_graders(assertion["assert"], options, base, problems)})
            continue
        kind = base_type(assertion["type"])[0]
        if kind not in MODEL_TYPES:
            out.append(assertion)
            continue
        found = dict(assertion)
        provider = assertion.get("provider") or options.get("provider")
        if provider:
            found["provider"] = _public(provider)
        if provider and (kind not in similarity.EMBEDDING_TYPES or kind == similarity.RELEVANCE):
            found["grader"] = providers.to_litellm(provider)
            if found["grader"] is None:
                problems.append(f"grader provider {json.dumps(_public(provider), default=str)[:80]} "
                                f"(mapped: {providers.GRADERS}; or give one at run time: --metadata abo_grader)")
        if provider and kind in similarity.EMBEDDING_TYPES:
            found["embedder"] = providers.to_embedder(provider)
            if found["embedder"] is None:
                problems.append(f"embedding provider {json.dumps(_public(provider), default=str)[:80]} "
                                f"(mapped: {providers.EMBEDDERS}; or give one at run time: --metadata abo_embedder)")
            elif not found["embedder"]:
                del found["embedder"]
        prompt = assertion.get("rubricPrompt") or options.get("rubricPrompt")
        if isinstance(prompt, str) and prompt.startswith("file://"):
            try:
                prompt = read_text(files.resolve(base, prompt, "rubricPrompt")[0])
            except AboError as e:
                problems.append(str(e))
        if prompt:
            found["rubricPrompt"] = prompt
            problem = nunjucks.problem(prompt if isinstance(prompt, str) else json.dumps(prompt), "rubricPrompt")
            if problem:
                problems.append(problem)
        if options.get("factuality"):
            found["factuality"] = options["factuality"]
        out.append(found)
    return out


def _render_value(value, resolved: dict, where: str, base, problems: list[str]):
    if isinstance(value, str) and value.startswith("file://"):
        path = files.resolve(base, value, where)[0]
        if path.suffix.lower() in (".json", ".yaml", ".yml"):
            return read_yaml(path)
        problems.append("an assertion value from a file that is not JSON or YAML")
        return value
    if isinstance(value, str):
        return nunjucks.render(value, resolved, where)
    if isinstance(value, list):
        return [nunjucks.render(v, resolved, where) if isinstance(v, str) else v for v in value]
    return value


def _filled(asserts: list[dict], resolved: dict, where: str, base, problems: list[str]) -> list[dict]:
    out = []
    for assertion in asserts:
        if assertion["type"] == "assert-set":
            out.append({**assertion, "assert": _filled(assertion["assert"], resolved, where, base, problems)})
            continue
        filled, kind = {**assertion}, base_type(assertion["type"])[0]
        if kind in code.CODE_TYPES:
            filled["value"] = _script(assertion.get("value"), base, f"{where} {kind} assertion", problems)
            problem = code.value_problem(kind, filled["value"])
        else:
            if "value" in assertion:
                filled["value"] = _render_value(assertion["value"], resolved, f"{where} assertion", base, problems)
            checked = graded.value_problem if kind in MODEL_TYPES else checks.value_problem
            problem = checked(kind, filled.get("value"))
        if problem:
            problems.append(problem)
        out.append(filled)
    return out


def _script(value, base, where: str, problems: list[str]):
    """A code assertion's value: the code as written, or a `file://` script as its absolute path (and function)."""
    if not (isinstance(value, str) and value.startswith("file://")):
        return value
    path, function = code.split_ref(value)
    try:
        found = files.resolve(base, "file://" + path, where)[0]
    except AboError as e:
        problems.append(str(e))
        return value
    return f"file://{found}" + (f":{function}" if function else "")


def read_default(config: dict, base, problems: list[str]) -> dict:
    default = config.get("defaultTest") or {}
    if isinstance(default, str):
        try:
            path = files.resolve(base, default, "defaultTest")[0]
            default = read_yaml(path) if path.suffix.lower() in (".yaml", ".yml", ".json") else None
        except AboError as e:
            problems.append(str(e))
            return {}
        if not isinstance(default, dict):
            problems.append("defaultTest: a file that is not a YAML/JSON mapping")
            return {}
        if "$ref" in json.dumps(default):
            problems.append("defaultTest: a file with $ref pointers (promptfoo 0.120.0 leaves them unresolved)")
    if not isinstance(default, dict):
        problems.append("defaultTest is not a mapping")
        return {}
    return default


def read_tests(tests, base, root: dict, problems: list[str]) -> list:
    """The test cases: inline, `file://` files and globs, `{path: ...}` entries."""
    entries = tests if isinstance(tests, list) else [tests] if tests else []
    found = []
    for entry in entries:
        if isinstance(entry, dict) and "path" in entry and "vars" not in entry:
            entry = entry["path"]
        if isinstance(entry, str):
            if not entry.startswith("file://") and not entry.endswith((".csv", ".yaml", ".yml", ".json", ".jsonl")):
                problems.append(f"tests from {entry.split(':')[0]} (CSV, JSON, JSONL and YAML files are read)")
                continue
            try:
                for path in files.resolve(base, entry, "tests"):
                    found.extend(files.read_tests_file(path, problems))
            except AboError as e:
                problems.append(str(e))
        else:
            found.append(files.deref(entry, root, problems))
    return found


def _names(item: dict) -> set:
    return {str(item.get("id") or ""), str(item.get("label") or "")} - {""}


def _admits(filters, names: set) -> bool:
    if not isinstance(filters, list):
        return True
    return any(f in names or f.endswith("*") and any(n.startswith(f[:-1]) for n in names) for f in map(str, filters))


class Cases:
    """Everything the tests need to know of the imported prompt and provider."""

    def __init__(self, base, prompt, provider: dict, question: str, chat: bool, problems: list[str], notes: list[str]):
        self.base, self.prompt, self.provider, self.question, self.chat = base, prompt, provider, question, chat
        self.problems, self.notes = problems, notes
        self.plain = nunjucks.is_plain(question)

    def rows(self, config: dict) -> list[dict]:
        default = read_default(config, self.base, self.problems)
        for key in sorted(set(default) - TEST_KEYS):
            self.problems.append(f"defaultTest key {key}")
        default_asserts = _asserts(default.get("assert"), "defaultTest", self.problems, self.notes)
        rows, seen = [], {}
        for i, test in enumerate(read_tests(config.get("tests"), self.base, config, self.problems)):
            where = f"tests[{i}]"
            if not isinstance(test, dict):
                self.problems.append(f"{where} is not a mapping")
                continue
            for key in sorted(set(test) - TEST_KEYS):
                self.problems.append(f"test key {key}")
            options = {**(default.get("options") or {}), **(test.get("options") or {})}
            for key in sorted(set(options) - OPTION_KEYS):
                self.problems.append(f"test option {key}")
            if not allowed(self.prompt, test.get("prompts")) or not _admits(test.get("providers"), _names(self.provider)):
                continue
            raw_vars = {**(default.get("vars") or {}), **(test.get("vars") or {})}
            if not isinstance(test.get("vars") or {}, dict):
                self.problems.append("test vars from a file")
                continue
            asserts = default_asserts + _asserts(test.get("assert"), where, self.problems, self.notes)
            asserts = with_graders(asserts, options, self.base, self.problems)
            threshold = test.get("threshold", default.get("threshold"))
            try:
                combos = [raw_vars] if options.get("disableVarExpansion") else expand(raw_vars, self.base, where)
                for values in combos:
                    rows.append(self._row(values, asserts, threshold, where, seen, test))
            except AboError as e:
                self.problems.append(str(e))
        names = sorted({k for row in rows for k in row})
        for row in rows:  # every document has every field; Nunjucks renders a missing var as ""
            for name in names:
                row.setdefault(name, "")
        return rows

    def _row(self, raw: dict, asserts: list[dict], threshold, where: str, seen: dict, test: dict) -> dict:
        loaded = {}
        for name, value in raw.items():
            if str(name) in RESERVED_FIELDS or str(name).startswith("abo_"):
                self.problems.append(f"var name {name!r} (reserved)")
                continue
            loaded[str(name)] = _load_var(value, self.base, f"{where}.vars.{name}", self.problems)
        stripped = {k: v[:-1] if isinstance(v, str) and v.endswith("\n") else v for k, v in loaded.items()}
        resolved = nunjucks.resolve_variables(stripped)
        context = resolved if self.chat else nunjucks.rendered_vars(resolved, where)
        row = {k: js_str(v) if not isinstance(v, str) else v for k, v in context.items()}
        if not self.plain:
            row[PROMPT_FIELD] = nunjucks.render(self.question, context, f"{where} prompt", wrap_partial=not self.chat)
        filled = _filled(asserts, resolved, where, self.base, self.problems)
        key = str(row.get("id") or example_id(json.dumps([row, filled], sort_keys=True, default=str)))
        seen[key] = seen.get(key, 0) + 1
        row["id"] = key if seen[key] == 1 else f"{key}-{seen[key]}"  # the same test twice runs twice
        row.setdefault("target", _gold(filled))
        grading = {"assert": filled, "threshold": threshold}
        if needs_env(filled):  # what code assertions see: promptfoo's vars, prompt and test
            prompt = nunjucks.render(self.prompt.raw, context, f"{where} prompt", wrap_partial=not self.chat)
            grading.update(vars=resolved, prompt=prompt, test={k: test[k] for k in ("description", "metadata") if k in test})
        row[GRADING_FIELD] = json.dumps(grading, ensure_ascii=False, default=str)
        return row


def _gold(asserts: list[dict]) -> str:
    """The expected answer shown to optimizers: the first positive equals/contains/starts-with value."""
    for kind in ("equals", "contains", "icontains", "starts-with"):
        for assertion in asserts:
            if assertion["type"] == kind and isinstance(assertion.get("value"), (str, int, float)):
                return js_str(assertion["value"])
    return ""
