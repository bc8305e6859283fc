"""Mutation testing of the modules whose mistakes a user cannot see (a wrong p-value, split, price or
projection still prints a plausible number): mutmut changes one operator, constant or call of a module at
a time and runs the module's fast unit tests against it; a mutant no test fails on "survived". The score is
the share of mutants killed (a mutant that makes the tests time out counts as killed: it changed what the
code does; mutmut's limit is 15 times the tests' own time, so no test asserts a time).

Each module runs on its own, in a copy of the source tree under --workdir, with ONE mutmut worker by
default and `nice 10`, and only its own test files, `-m "not slow"`: none loads an embedded model, so no
llama lock is needed. mutmut is a development tool, not a dependency: install it in a separate venv.

    python3 -m venv /tmp/mutvenv && /tmp/mutvenv/bin/pip install "mutmut==3.8.1"
    # the project's own packages, from the venv that has them (or pip install -e ".[test]" into this one):
    echo "import site; site.addsitedir('$PWD/.venv/lib/python3.11/site-packages')" \\
        > /tmp/mutvenv/lib/python3.11/site-packages/zz_project.pth
    /tmp/mutvenv/bin/python bench/mutation.py                      # all modules, ~1 h on 2 cores
    /tmp/mutvenv/bin/python bench/mutation.py infra/stats.py tasks/splits.py
    cd /tmp/lm-eval-abo-mutation/tasks_splits && /tmp/mutvenv/bin/mutmut show <mutant name>   # a survivor's diff
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import record

# module (under lm_eval_abo/) -> its unit tests (files, or single tests where the rest of a file runs whole searches)
MODULES = {
    "infra/stats.py": ["tests/test_stats.py", "tests/test_headroom.py", "tests/test_metrics.py",
                       "tests/test_stats_mutants.py"],
    "optimizers/selection.py": ["tests/test_stats.py", "tests/test_racing.py", "tests/test_selection_mutants.py"],
    "reports/regression.py": ["tests/test_check.py", "tests/test_regression_mutants.py"],
    "cost/ledger.py": ["tests/test_ledger.py", "tests/test_search.py", "tests/test_ledger_mutants.py"],
    "run/projection.py": ["tests/test_ledger.py::test_the_projection_renders_the_tasks_real_prompts_and_counts_"
                          "each_methods_calls", "tests/test_projection_mutants.py"],
    "scoring.py": ["tests/test_scoring.py", "tests/test_scoring_mutants.py",
                   "tests/test_metrics.py::test_the_error_threshold_setting_replaces_the_default"],
    "tasks/splits.py": ["tests/test_splits.py"],
    "optimizers/copying.py": ["tests/test_copying.py"],
}
SKIPPED_IN_COPY = {".git", "mutants", "results", "__pycache__", ".pytest_cache", ".venv"}


def prepare(module: str, workdir: Path) -> Path:
    """A fresh copy of the tree with a setup.cfg that points mutmut at one module and its tests."""
    here = workdir / module.removesuffix(".py").replace("/", "_")
    shutil.rmtree(here, ignore_errors=True)
    shutil.copytree(record.REPO, here, ignore=lambda _, names: [n for n in names if n in SKIPPED_IN_COPY])
    tests = [t for t in MODULES[module] if (record.REPO / t.partition("::")[0]).exists()]
    others = sorted(p.name for p in here.iterdir() if p.name not in ("lm_eval_abo", "setup.cfg"))
    lines = ["[mutmut]", "source_paths = lm_eval_abo", f"only_mutate = lm_eval_abo/{module}",
             "pytest_add_cli_args_test_selection =", *(f"    {t}" for t in tests),
             "pytest_add_cli_args =", "    -m", "    not slow", "    -p", "    no:cacheprovider",
             "also_copy =", *(f"    {name}" for name in others)]
    (here / "setup.cfg").write_text("\n".join(lines) + "\n")
    (here / "mutants").mkdir()  # on PYTHONPATH from the start: a folder missing then is never looked in again
    return here


def mutmut(here: Path, *args: str, capture: bool = False) -> str:
    env = {**os.environ, "PYTHONPATH": str(here / "mutants")}  # test subprocesses import the mutated copy too
    done = subprocess.run(["nice", "-n", "10", sys.executable, "-m", "mutmut", *args], cwd=here, env=env,
                          text=True, capture_output=capture, check=False)
    return done.stdout if capture else ""


def score(module: str, here: Path, max_children: int | None) -> dict:
    """Run mutmut on the prepared copy (None: read the results of a run finished there)."""
    if max_children is not None:
        mutmut(here, "run", "--max-children", str(max_children))
    mutmut(here, "export-cicd-stats", capture=True)
    counts = json.loads((here / "mutants" / "mutmut-cicd-stats.json").read_text())
    survivors = [line.strip().split(":")[0] for line in mutmut(here, "results", capture=True).splitlines()
                 if line.strip().endswith((": survived", ": no tests"))]
    counted = counts["total"] - counts["skipped"]
    detected = counts["killed"] + counts["timeout"]
    return {"module": module, "mutants": counted, "killed": counts["killed"], "timeout": counts["timeout"],
            "survived": counts["survived"], "no tests": counts["no_tests"],
            "score": round(100 * detected / counted, 1) if counted else None, "survivors": survivors}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("modules", nargs="*", default=list(MODULES), help="paths under lm_eval_abo/ (default: all)")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/lm-eval-abo-mutation"))
    parser.add_argument("--max-children", type=int, default=1, help="mutmut workers (default 1: the machine is shared)")
    parser.add_argument("--collect", action="store_true", help="only read the results of runs finished in --workdir")
    args = parser.parse_args(argv)
    unknown = [m for m in args.modules if m not in MODULES]
    if unknown:
        parser.error(f"unknown module(s) {', '.join(unknown)}; known: {', '.join(MODULES)}")
    print(f"load average {record.load_average()}", flush=True)
    rows = []
    for module in args.modules:
        with record.stopwatch() as elapsed:
            here = args.workdir / module.removesuffix(".py").replace("/", "_")
            row = score(module, here if args.collect else prepare(module, args.workdir),
                        None if args.collect else args.max_children)
        rows.append({**row, "minutes": None if args.collect else round(elapsed() / 60, 1),
                     "load_average": record.load_average()})
        print(f"{module}: {row['score']}% of {row['mutants']} killed; survivors: "
              f"{' '.join(name.rpartition('.')[2] for name in row['survivors']) or '-'}", flush=True)
    print(record.table([{k: v for k, v in r.items() if k != "survivors"} for r in rows]))
    saved = record.RESULTS_DIR / "mutation.json"  # the modules of earlier runs stay, each with its own load
    earlier = json.loads(saved.read_text())["rows"] if saved.exists() else []
    ran = {r["module"] for r in rows}
    rows = [r for r in earlier if r["module"] not in ran] + rows
    record.save("mutation", {"rows": sorted(rows, key=lambda r: list(MODULES).index(r["module"])),
                             "max_children": args.max_children})


if __name__ == "__main__":
    main()
