"""Markdown for what the commands print and write: one table writer, one number format."""

from __future__ import annotations


def fmt(value, digits: int = 3) -> str:
    """A number for a table ("-" where there is none)."""
    return "-" if value is None or value == "" else f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def row(cells) -> str:
    return "| " + " | ".join(str(c).replace("|", "\\|").replace("\n", " ") for c in cells) + " |"


def rule(columns: int, left: int = 1) -> str:
    """The line under a header: the first `left` columns aligned left (text), the others right (numbers)."""
    return "|" + "|".join("---" if i < left else "---:" for i in range(columns)) + "|"


def table(header, rows, left: int = 1) -> list[str]:
    return [row(header), rule(len(header), left), *(row(r) for r in rows)]
