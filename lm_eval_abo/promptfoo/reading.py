"""Reading a promptfoo config for `lm-eval-abo import promptfoo`: its prompts, first provider and tests.

What cannot be carried over exactly is collected and refused in one error that lists it all. The config
is read with the safe YAML loader; `file://` references resolve only inside the config's directory;
imported text is never executed as a template.
"""

from __future__ import annotations

import csv
import io
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from lm_eval_abo.infra.errors import AboError
from lm_eval_abo.infra.files import read_text, read_yaml
from lm_eval_abo.promptfoo import assertions, providers, syntax
from lm_eval_abo.tasks.synthetic import example_id

# Keys that do not change what is asked or how it is graded (reporting, sharing, concurrency, env).
IGNORED_KEYS = {"description", "tags", "providers", "prompts", "tests", "defaultTest", "outputPath", "evaluateOptions",
                "commandLineOptions", "sharing", "env", "metadata", "writeLatestResults", "$schema"}
TEST_KEYS = {"description", "vars", "assert", "threshold", "metadata"}
ASSERT_KEYS = {"type", "value", "weight", "metric", "description"}
RESERVED_FIELDS = {assertions.GRADING_FIELD}


@dataclass
class Imported:
    """What was read from the promptfoo config (problems: everything that cannot be carried over)."""

    config: Path
    problems: list[str] = field(default_factory=list)
    prompt: str = ""  # the Nunjucks template of the first prompt (user turn)
    system: str = ""  # a chat prompt's system message
    other_prompts: int = 0
    provider: dict = field(default_factory=dict)  # {"id", "config"} of the first provider
    lm_eval: dict = field(default_factory=dict)  # {"model", "model_args"} suggestion
    rows: list[dict] = field(default_factory=list)


def _inside(base: Path, ref: str, where: str) -> Path:
    """A `file://` reference resolved inside the config's directory, or a clear error."""
    relative = ref[len("file://"):]
    path = (base / relative).resolve()
    if not path.is_relative_to(base):
        raise AboError(f"{where}: {ref} points outside the config's directory {base}")
    if not path.is_file():
        raise AboError(f"{where}: {ref}: no such file in {base}")
    return path


# --- prompts ------------------------------------------------------------------------------------


def _prompt_entries(prompts) -> list:
    """promptfoo's forms: one prompt, a list of prompts, or a map {file://x: label}."""
    if isinstance(prompts, list):
        return prompts
    if isinstance(prompts, dict) and not ("raw" in prompts or "id" in prompts):
        return list(prompts)
    return [prompts] if prompts else []


def _read_prompts(imp: Imported, prompts, base: Path) -> None:
    entries = _prompt_entries(prompts)
    if not entries:
        imp.problems.append("no prompts")
        return
    imp.other_prompts = len(entries) - 1
    entry = entries[0]
    if isinstance(entry, dict):
        entry = entry.get("raw", entry.get("id"))
    if not isinstance(entry, str):
        imp.problems.append("prompt 1 is neither text nor a file:// reference")
        return
    text, suffix = entry, ""
    if entry.startswith("file://"):
        path = _inside(base, entry, "prompts[0]")
        suffix = path.suffix.lower()
        if suffix not in (".txt", ".md", ".j2", ".json"):
            imp.problems.append(f"prompt file type {suffix or '(none)'} (supported: .txt, .md, .j2, .json chat)")
            return
        text = read_text(path)
        if suffix == ".txt":  # as promptfoo reads it: prompts separated by lines "---", each trimmed
            pieces = [p.strip() for p in re.split(r"^---$", "\n".join(text.splitlines()), flags=re.M)]
            pieces = [p for p in pieces if p]
            text, imp.other_prompts = (pieces[0] if pieces else ""), imp.other_prompts + max(0, len(pieces) - 1)
    stripped = text.strip()
    if suffix == ".json" or stripped.startswith("[") and stripped.endswith("]"):
        _read_chat(imp, text)
    else:
        imp.prompt = text


def _read_chat(imp: Imported, text: str) -> None:
    try:
        messages = json.loads(text)
    except json.JSONDecodeError:
        imp.problems.append("a chat prompt that is not plain JSON (e.g. with {{ var | dump }})")
        return
    roles = [m.get("role") if isinstance(m, dict) else None for m in messages]
    if roles not in (["user"], ["system", "user"]) or not all(isinstance(m.get("content"), str) for m in messages):
        imp.problems.append("a chat prompt other than [system,] user with text content")
        return
    imp.prompt = messages[-1]["content"]
    imp.system = messages[0]["content"] if len(messages) == 2 else ""
    if syntax.PLACEHOLDER.search(imp.system):
        imp.problems.append("a system message with {{ vars }}")


# --- providers ----------------------------------------------------------------------------------


def _read_providers(imp: Imported, given) -> None:
    """The first provider and its lm-eval equivalent; every provider without one is a problem."""
    if given is None:
        return
    if isinstance(given, str):
        given = [given]
    elif isinstance(given, dict):  # one provider, or a map {id: {config}}
        given = [given] if "id" in given else [{"id": k, **(v or {})} for k, v in given.items()]
    unsupported = []
    for i, entry in enumerate(given):
        pid, config = (entry, {}) if isinstance(entry, str) else (entry.get("id"), entry.get("config") or {})
        mapped = providers.to_lm_eval(pid, config) if isinstance(pid, str) else None
        if mapped is None:
            unsupported.append(str(pid))
        elif i == 0:
            imp.provider, imp.lm_eval = {"id": pid, "config": config}, mapped
    if unsupported:
        imp.problems.append("providers " + ", ".join(unsupported) + f" (supported: {providers.SUPPORTED})")


# --- tests --------------------------------------------------------------------------------------


def _read_tests(tests, base: Path) -> list:
    """The test cases: a list whose entries are tests or file:// references, or one reference."""
    if not isinstance(tests, list):
        tests = [tests]
    found = []
    for entry in tests:
        if isinstance(entry, str):
            found.extend(_read_test_file(entry, base))
        else:
            found.append(entry)
    return found


def _read_test_file(ref: str, base: Path) -> list:
    if not ref.startswith("file://"):
        raise AboError(f"tests: {ref!r} is neither a test case nor a file:// reference")
    path = _inside(base, ref, "tests")
    text = read_text(path)
    if path.suffix == ".csv":
        return [_csv_test(row) for row in csv.DictReader(io.StringIO(text))]
    try:
        if path.suffix == ".jsonl":
            return [json.loads(line) for line in text.splitlines() if line.strip()]
        tests = json.loads(text) if path.suffix == ".json" else read_yaml(path)
    except ValueError as e:
        raise AboError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(tests, list):
        raise AboError(f"{path}: expected a list of test cases")
    return tests


def _csv_test(row: dict) -> dict:
    """A promptfoo CSV row: `__expected*` columns are assertions (`type:value`, bare value = equals)."""
    test = {"vars": {}, "assert": []}
    for column, value in row.items():
        if column.startswith("__expected"):
            if value:
                kind, sep, rest = value.partition(":")
                test["assert"].append({"type": kind, "value": rest} if sep and kind.replace("-", "").isalpha() else {"type": "equals", "value": value})
        elif column == "__description":
            test["description"] = value
        elif column.startswith("__"):
            test[column] = value  # reported as an unsupported key
        else:
            test["vars"][column] = value
    return test


def _check_asserts(asserts, where: str, problems: list[str]) -> list[dict]:
    if asserts is None:
        return []
    if not isinstance(asserts, list):
        problems.append(f"{where}.assert is not a list")
        return []
    kept = []
    for j, assertion in enumerate(asserts):
        kind = assertion.get("type") if isinstance(assertion, dict) else None
        if not isinstance(kind, str) or assertions.base_type(kind)[0] not in assertions.SUPPORTED:
            problems.append(f"assert type {kind!r}")
            continue
        extra = set(assertion) - ASSERT_KEYS
        if extra:
            problems.append(f"{where}.assert[{j}] keys {', '.join(sorted(extra))}")
        value = assertion.get("value")
        if not isinstance(value, (str, int, float)) or isinstance(value, str) and value.startswith(("file://", "package:")):
            problems.append(f"{where}.assert[{j}] value that is not text or a number")
            continue
        kept.append({k: assertion[k] for k in ("type", "value", "weight") if k in assertion})
    return kept


def _var_text(value, where: str, base: Path, problems: list[str]) -> str:
    if isinstance(value, (list, dict)):
        problems.append(f"{where} is a {type(value).__name__} (promptfoo expands or serialises those; write plain text)")
        return ""
    if isinstance(value, str) and value.startswith("file://"):
        path = _inside(base, value, where)
        if path.suffix in (".py", ".js", ".mjs", ".cjs", ".ts", ".yaml", ".yml", ".pdf"):
            problems.append(f"{where} loads a {path.suffix} file")
            return ""
        return read_text(path).strip()  # promptfoo reads text vars stripped
    if isinstance(value, str) and value.startswith("package:"):
        problems.append(f"{where} loads a package")
        return ""
    return syntax.js_str(value)


def _filled(assertion: dict, values: dict, where: str) -> dict:
    """An assertion with `{{ var }}` references in its value replaced, as promptfoo renders it."""
    value = assertion["value"]
    if isinstance(value, str):
        value = syntax.fill(syntax.template_parts(value, where), values)
    return {**assertion, "value": value}


def _read_rows(imp: Imported, config: dict, base: Path) -> None:
    default = config.get("defaultTest") or {}
    if isinstance(default, str):
        imp.problems.append("defaultTest as a file reference")
        default = {}
    extra = set(default) - TEST_KEYS
    if extra:
        imp.problems.append(f"defaultTest keys {', '.join(sorted(extra))}")
    default_asserts = _check_asserts(default.get("assert"), "defaultTest", imp.problems)
    tests = _read_tests(config.get("tests") or [], base)
    seen_ids = set()
    for i, test in enumerate(tests):
        where = f"tests[{i}]"
        if not isinstance(test, dict):
            raise AboError(f"{where} is not a mapping")
        extra = set(test) - TEST_KEYS
        if extra:
            imp.problems.append(f"{where} keys {', '.join(sorted(extra))}")
        raw_vars = {**(default.get("vars") or {}), **(test.get("vars") or {})}
        values = {}
        for name, value in raw_vars.items():
            if not syntax.NAME.fullmatch(str(name)) or name in RESERVED_FIELDS or name.startswith("abo_"):
                imp.problems.append(f"{where} var name {name!r}")
                continue
            values[name] = _var_text(value, f"{where}.vars.{name}", base, imp.problems)
        asserts = default_asserts + _check_asserts(test.get("assert"), where, imp.problems)
        asserts = [_filled(a, values, f"{where} assertion") for a in asserts]
        threshold = test.get("threshold", default.get("threshold"))
        row = dict(values)
        row["id"] = str(values.get("id") or example_id(json.dumps([values, asserts], sort_keys=True)))
        if row["id"] in seen_ids:
            raise AboError(f"{where}: two tests have the same id {row['id']!r} (the same vars and assertions?)")
        seen_ids.add(row["id"])
        row.setdefault("target", _gold(asserts))
        row[assertions.GRADING_FIELD] = json.dumps({"assert": asserts, "threshold": threshold}, ensure_ascii=False)
        imp.rows.append(row)
    if len(imp.rows) < 3:
        raise AboError(f"{imp.config}: {len(imp.rows)} test(s); at least 3 are needed for train, dev and test")
    names = sorted({k for row in imp.rows for k in row})
    for row in imp.rows:  # every document has every field; Nunjucks renders a missing var as ""
        for name in names:
            row.setdefault(name, "")


def _gold(asserts: list[dict]) -> str:
    """The expected answer shown to optimizers: the first positive equals/contains/starts-with value."""
    for kind in ("equals", "contains", "icontains", "starts-with"):
        for assertion in asserts:
            if assertion["type"] == kind:
                return syntax.js_str(assertion["value"])
    return ""


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
    _read_prompts(imp, config.get("prompts"), base)
    _read_providers(imp, config.get("providers"))
    _read_rows(imp, config, base)
    if imp.prompt:
        parts = syntax.template_parts(imp.prompt, "prompt")
        missing = sorted(set(parts[1::2]) - set(imp.rows[0]))
        if missing:
            imp.problems.append("prompt vars no test defines: " + ", ".join(missing))
    if imp.problems:
        raise AboError(f"{path}: cannot import: " + "; ".join(dict.fromkeys(imp.problems)))
    return imp
