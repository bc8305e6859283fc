"""docs/reliability.md is generated from the tests: each reliability test module records, per case,
what it tried and what it observed, and the module's section of the page must match.

Regenerate after a change: LM_EVAL_ABO_WRITE_DOCS=1 python -m pytest tests/test_bad_input.py ...
(the slow modules too: `-m slow` or no marker filter). Each case that ran is compared with its row of the
page, so a `-k` selection compares the rows it ran; a module whose cases recorded nothing fails, as it
compared nothing.
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

    def line(self, case_id: str) -> str:
        return "| " + " | ".join(_cell(c) for c in self.rows[case_id]) + " |"

    def head(self) -> list[str]:
        return [f"## {self.title}", "", "| " + " | ".join(self.columns) + " |", "|" + "---|" * len(self.columns)]

    def markdown(self, documented: dict[str, str] | None = None) -> str:
        """The section: the rows that ran, the page's own rows (`documented`, by case) for the others."""
        lines = [self.line(i) if i in self.rows else (documented or {}).get(i) for i in self.case_ids]
        return "\n".join(self.head() + [line for line in lines if line])

    def fixture(self):
        """The module's autouse fixture (`table = SECTION.fixture()`): after its tests, `check` the section."""
        @pytest.fixture(scope="module", autouse=True)
        def table():
            yield self
            self.check()

        return table

    def documented(self, block: str) -> dict[str, str]:
        """The page's rows of this section, by case."""
        rows = {}
        for line in block.splitlines()[len(self.head()) + 1:-1]:
            case = next((i for i in self.case_ids if line.startswith(f"| {_cell(i)} | ")), None)
            if case:
                rows[case] = line
        return rows

    def check(self) -> None:
        begin, end = f"<!-- begin {self.name} -->", f"<!-- end {self.name} -->"
        text = DOC.read_text(encoding="utf-8") if DOC.exists() else ""
        pattern = re.compile(re.escape(begin) + ".*?" + re.escape(end), re.S)
        current = pattern.search(text)
        documented = self.documented(current.group(0)) if current else {}
        if os.environ.get("LM_EVAL_ABO_WRITE_DOCS"):
            block = f"{begin}\n{self.markdown(documented)}\n{end}"
            text = pattern.sub(lambda _: block, text) if current else f"{text.rstrip()}\n\n{block}\n"
            DOC.parent.mkdir(parents=True, exist_ok=True)
            DOC.write_text(text, encoding="utf-8")
            return
        assert self.rows, f"no case of section '{self.name}' recorded what it observed: nothing was compared"
        assert current, f"{DOC.name} has no section '{self.name}'; write it with:\n  {REGENERATE}"
        assert current.group(0).splitlines()[1:len(self.head()) + 1] == self.head(), f"section '{self.name}': its heading"
        if set(self.rows) == set(self.case_ids):  # a whole run: the section is exactly what was observed
            assert current.group(0) == f"{begin}\n{self.markdown()}\n{end}", (
                f"{DOC.name} section '{self.name}' does not match what the tests observed; regenerate it with:\n"
                f"  {REGENERATE}\nobserved:\n{self.markdown()}")
        wrong = [self.line(i) for i in self.case_ids if i in self.rows and documented.get(i) != self.line(i)]
        assert not wrong, (
            f"{DOC.name} section '{self.name}' does not match what the tests observed; regenerate it with:\n"
            f"  {REGENERATE}\nobserved:\n" + "\n".join(wrong)
        )
