"""The files a promptfoo config names: `file://` references (globs included) confined to the config's
directory, local `$ref` pointers, and test files (CSV, JSON, JSONL, YAML) read as promptfoo 0.120.0 reads
them (`readStandaloneTestsFile`, `testCaseFromCsvRow`, `assertionFromString`)."""

from __future__ import annotations

import copy
import csv
import io
import json
import re
from pathlib import Path

from lm_eval_abo.infra.errors import AboError
from lm_eval_abo.infra.files import read_text, read_yaml
from lm_eval_abo.promptfoo.jsregex import js_trim

_GLOB = re.compile(r"[*?\[{]")
# promptfoo's BaseAssertionTypesSchema, in its order (the CSV shorthand `type(threshold):value` matches these)
ASSERTION_TYPES = (  # noqa: SIM905
    "answer-relevance bleu classifier contains contains-all contains-any contains-html contains-json contains-sql "
    "contains-xml context-faithfulness context-recall context-relevance conversation-relevance cost equals factuality "
    "finish-reason g-eval gleu guardrails icontains icontains-all icontains-any is-html is-json is-refusal is-sql "
    "is-valid-function-call is-valid-openai-function-call is-valid-openai-tools-call is-xml javascript latency levenshtein "
    "llm-rubric pi meteor model-graded-closedqa model-graded-factuality moderation perplexity perplexity-score python "
    "regex rouge-n ruby similar similar:cosine similar:dot similar:euclidean starts-with trace-error-spans "
    "trace-span-count trace-span-duration search-rubric webhook").split()
_SHORTHAND = re.compile(r"^(not-)?(" + "|".join(map(re.escape, ASSERTION_TYPES)) + r")(?:\((\d+(?:\.\d+)?)\))?(?::([\s\S]*))?\Z")
_SCORED = {"answer-relevance", "classifier", "context-faithfulness", "context-recall", "context-relevance", "cost", "latency",
           "levenshtein", "perplexity-score", "perplexity", "rouge-n", "similar", "starts-with"}


def is_glob(ref: str) -> bool:
    return bool(_GLOB.search(ref))


def resolve(base: Path, ref: str, where: str) -> list[Path]:
    """The files a `file://` reference names (a glob names them in name order), all inside `base`."""
    relative = ref.removeprefix("file://")
    if Path(relative).is_absolute():
        raise AboError(f"{where}: {ref} points outside the config's directory {base}")
    if _GLOB.search(relative):
        if ".." in Path(relative).parts:
            raise AboError(f"{where}: {ref} points outside the config's directory {base}")
        found = sorted(p.resolve() for p in base.glob(relative) if p.is_file())
        if not found:
            raise AboError(f"{where}: {ref}: no file in {base} matches")
        return found
    path = (base / relative).resolve()
    if not path.is_relative_to(base):
        raise AboError(f"{where}: {ref} points outside the config's directory {base}")
    if not path.is_file():
        raise AboError(f"{where}: {ref}: no such file in {base}")
    return [path]


def relative_ref(base: Path, path: Path) -> str:
    return "file://" + path.relative_to(base).as_posix()


def deref(node, root, problems: list[str], depth: int = 0):
    """The node with every local `{"$ref": "#/a/b"}` replaced by a copy of what it points at."""
    if depth > 50:
        problems.append("$ref pointers nest too deeply (a cycle?)")
        return node
    if isinstance(node, list):
        return [deref(item, root, problems, depth) for item in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        pointer = node["$ref"]
        if not isinstance(pointer, str) or not pointer.startswith("#/"):
            problems.append(f"$ref {pointer!r} (only pointers into the config, #/..., are read)")
            return node
        target = root
        for part in pointer[2:].split("/"):
            part = part.replace("~1", "/").replace("~0", "~")
            if isinstance(target, dict) and part in target:
                target = target[part]
            elif isinstance(target, list) and part.isdigit() and int(part) < len(target):
                target = target[int(part)]
            else:
                problems.append(f"$ref {pointer!r} points at nothing in the config")
                return node
        return deref(copy.deepcopy(target), root, problems, depth + 1)
    return {k: deref(v, root, problems, depth) for k, v in node.items()}


def assertion_from_string(expected: str) -> dict:
    """A CSV `__expected` cell as promptfoo reads it (already trimmed)."""
    for prefix, kind in (("javascript:", "javascript"), ("fn:", "javascript"), ("eval:", "javascript")):
        if expected.startswith(prefix):
            return {"type": kind, "value": js_trim(expected[len(prefix):])}
    for prefix in ("grade:", "llm-rubric:"):
        if expected.startswith(prefix):
            return {"type": "llm-rubric", "value": expected[len(prefix):]}
    if expected.startswith("python:"):
        return {"type": "python", "value": js_trim(expected[7:])}
    if expected.startswith("file://") and re.search(r"\.(js|cjs|mjs|ts|py)(:|$)", expected):
        return {"type": "python" if ".py" in expected else "javascript", "value": expected}
    m = _SHORTHAND.match(expected)
    if not m:
        return {"type": "equals", "value": expected}
    negated, kind, threshold, value = m.groups()
    full = f"not-{kind}" if negated else kind
    if kind in ("contains-all", "contains-any", "icontains-all", "icontains-any"):
        return {"type": full, "value": [js_trim(v) for v in value.split(",")] if value else value}
    if kind in ("contains-json", "is-json"):
        return {"type": full, "value": value}
    assertion = {"type": full, "value": js_trim(value) if value is not None else None}
    if kind in _SCORED:
        assertion["threshold"] = float(threshold) if threshold else (0.8 if kind == "similar" else 0.75)
    return assertion


def csv_test(row: dict, problems: list[str], where: str) -> dict:
    """A CSV row as a promptfoo test: header names trimmed, `__expected*` cells trimmed and read as
    assertions, other `__` columns as options; var cells exactly as written (promptfoo does not trim them)."""
    test: dict = {"vars": {}, "assert": []}
    for key, value in ((k.strip(), v if v is not None else "") for k, v in row.items() if k is not None):
        if key.startswith("__expected"):
            if js_trim(value):
                test["assert"].append(assertion_from_string(js_trim(value)))
        elif key == "__description":
            test["description"] = value
        elif key == "__threshold":
            try:
                test["threshold"] = float(value)
            except ValueError:
                problems.append(f"{where}: __threshold {value!r} is not a number")
        elif key.startswith(("__metadata", "__metric")):
            pass  # labels for reports; they do not change what is asked or graded
        elif key.startswith("__"):
            problems.append(f"{where}: the CSV column {key}")
        else:
            test["vars"][key] = value
    return test


def read_tests_file(path: Path, problems: list[str]) -> list:
    """The test cases of one file."""
    text = read_text(path)
    where = path.name
    suffix = path.suffix.lower()
    if suffix == ".csv":
        rows = csv.DictReader(io.StringIO(text.removeprefix("\ufeff")))
        tests = []
        for i, row in enumerate(rows):
            if None in row or None in row.values():
                problems.append(f"{where} row {i + 1}: not as many cells as columns (promptfoo refuses the file)")
            tests.append(csv_test(row, problems, f"{where} row {i + 1}"))
        return tests
    try:
        if suffix == ".jsonl":
            return [json.loads(line) for line in text.splitlines() if line.strip()]
        tests = json.loads(text) if suffix == ".json" else read_yaml(path) if suffix in (".yaml", ".yml") else None
    except ValueError as e:
        raise AboError(f"{path}: not valid JSON ({e})") from None
    if tests is None and suffix not in (".yaml", ".yml", ".json"):
        problems.append(f"{where}: tests from a {suffix or 'extensionless'} file (CSV, JSON, JSONL and YAML are read)")
        return []
    if isinstance(tests, dict):
        tests = [tests]
    if not isinstance(tests, list):
        raise AboError(f"{path}: expected a list of test cases")
    return deref(tests, tests, problems)
