"""The reports of `compare` and `transfer`: the statistics of the transfer matrix (`matrix`), markdown and CSV
(`text`), and an HTML page with a heatmap and a bump chart (`page`)."""

from __future__ import annotations

from pathlib import Path

from lm_eval_abo.infra.files import write_json, write_text_atomic
from lm_eval_abo.reports.compare import page, text


def write(result: dict, folder: Path, stem: str) -> list[Path]:
    """`<stem>.json`, `.md`, `.csv` (the matrices' cells), `_rankings.csv` and `.html` in `folder`."""
    folder = Path(folder)
    return [write_json(folder / f"{stem}.json", result),
            write_text_atomic(folder / f"{stem}.md", text.markdown(result)),
            write_text_atomic(folder / f"{stem}.csv", text.cells_csv(result)),
            write_text_atomic(folder / f"{stem}_rankings.csv", text.rankings_csv(result)),
            write_text_atomic(folder / f"{stem}.html", page.html_page(result))]
