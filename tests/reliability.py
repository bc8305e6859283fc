"""docs/reliability.md is generated from the tests: each reliability test module records, per case,
what it tried and what it observed, and the module's section of the page must match.

Regenerate after a change: LM_EVAL_ABO_WRITE_DOCS=1 python -m pytest tests/test_bad_input.py ...
(the slow modules too: `-m slow` or no marker filter). A section is checked only when every case of
its module ran, so `-k` selections never fail it.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parent.parent / "docs" / "reliability.md"
REGENERATE = ("LM_EVAL_ABO_WRITE_DOCS=1 python -m pytest tests/test_bad_input.py tests/test_faults.py "
              "tests/test_crash_resume.py tests/test_secrets.py tests/test_hostile_text.py tests/test_one_writer.py "
              "tests/test_file_modes.py tests/test_disk_full.py")


def normalise(text: str, *paths) -> str:
    """Observed text without what differs between runs: temporary paths, ports, times, dates."""
    for path in paths:
        text = text.replace(str(path), "DIR")
    text = re.sub(r"process \d+ on \S+ \(since [^)]*\)", "process PID on HOST (since TIME)", text)
    text = re.sub(r"127\.0\.0\.1:\d+", "127.0.0.1:PORT", text)
    text = re.sub(r"port=\d+", "port=PORT", text)
    text = re.sub(r"\d{4}-\d\d-\d\dT\d[\d:\-]*(\.\d+)?", "DATE", text)
    return text.strip()


def code(text: str) -> str:
    """Inline markdown code that may itself hold backticks."""
    return f"`` {text} ``" if "`" in text else f"`{text}`"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", "<br>")


class Section:
    """The rows of one module's table, in the order of its cases."""

    def __init__(self, name: str, title: str, case_ids: list[str], columns=("case", "what was tried", "what happens")):
        self.name, self.title, self.case_ids, self.columns = name, title, list(case_ids), columns
        self.rows: dict[str, tuple[str, ...]] = {}

    def record(self, case_id: str, *cells: str) -> None:
        assert case_id in self.case_ids, f"unknown case {case_id}"
        self.rows[case_id] = (case_id, *cells)

    def markdown(self) -> str:
        lines = [f"## {self.title}", "", "| " + " | ".join(self.columns) + " |", "|" + "---|" * len(self.columns)]
        lines += ["| " + " | ".join(_cell(c) for c in self.rows[i]) + " |" for i in self.case_ids]
        return "\n".join(lines)

    def fixture(self):
        """The module's autouse fixture (`table = SECTION.fixture()`): after its tests, `check` the section."""
        @pytest.fixture(scope="module", autouse=True)
        def table():
            yield self
            self.check()

        return table

    def check(self) -> None:
        if set(self.rows) != set(self.case_ids):
            return  # a partial run (-k, a failed case): nothing to compare
        begin, end = f"<!-- begin {self.name} -->", f"<!-- end {self.name} -->"
        block = f"{begin}\n{self.markdown()}\n{end}"
        text = DOC.read_text(encoding="utf-8") if DOC.exists() else ""
        pattern = re.compile(re.escape(begin) + ".*?" + re.escape(end), re.S)
        current = pattern.search(text)
        if os.environ.get("LM_EVAL_ABO_WRITE_DOCS"):
            text = pattern.sub(lambda _: block, text) if current else f"{text.rstrip()}\n\n{block}\n"
            DOC.parent.mkdir(parents=True, exist_ok=True)
            DOC.write_text(text, encoding="utf-8")
            return
        assert current and current.group(0) == block, (
            f"{DOC.name} section '{self.name}' does not match what the tests observed; regenerate it with:\n"
            f"  {REGENERATE}\nobserved:\n{block}"
        )
