"""A full disk and a read-only output folder, mid-run, on real file systems: a small tmpfs filled to the
last block, and a read-only bind mount stacked on the output folder, made between two rounds or before
the test evaluation (tests/unwritable_run.py runs the scenarios in a private mount namespace). Root
ignores permission bits, so `chmod -w` would test nothing here; a mount does the same to root as to
anyone. The run stops with one line naming the file it could not write and the rounds it kept, every
file holds the last complete round, and `--resume` finishes once the folder is writable again."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from reliability import Section, code, normalise

HELPER = Path(__file__).parent / "unwritable_run.py"
SECTION = Section("disk-full", "Full disk and read-only output (tests/test_disk_full.py)", [
    "disk full between rounds", "read-only between rounds", "disk full at the test evaluation",
    "read-only from the start"])
TRIED = {
    "full-mid-run": ("disk full between rounds", ("`optimize --rounds 2` on an 8 MiB tmpfs, filled to the last block "
                                                  "when round 2 asks the optimizer; then the filler removed and "
                                                  "`--resume`")),
    "read-only-mid-run": ("read-only between rounds", ("`optimize --rounds 2`; a read-only bind mount stacked on the "
                                                       "output folder when round 2 asks the optimizer; then unmounted "
                                                       "and `--resume`")),
    "full-at-test": ("disk full at the test evaluation", ("`optimize --rounds 2`; the tmpfs filled just before the "
                                                          "test evaluation, so lm-eval cannot write its results; then "
                                                          "`--resume`")),
    "read-only-from-the-start": ("read-only from the start", "`optimize` with `--output` on a read-only mount"),
}


table = SECTION.fixture()


def namespaces_allowed(folder: Path) -> bool:
    if not shutil.which("unshare"):
        return False
    probe = subprocess.run(["unshare", "--mount", "--propagation", "private", "mount", "-t", "tmpfs", "-o", "size=1m",
                            "tmpfs", str(folder)], capture_output=True, check=False)
    return probe.returncode == 0


@pytest.fixture(scope="module")
def scenarios(tmp_path_factory) -> dict[str, dict]:
    root = tmp_path_factory.mktemp("unwritable")
    if not namespaces_allowed(root):
        pytest.skip("this machine does not allow a private mount namespace with a tmpfs (`unshare --mount`)")
    proc = subprocess.run(["unshare", "--mount", "--propagation", "private", sys.executable, str(HELPER), str(root)],
                          capture_output=True, text=True, timeout=900, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    found = {}
    for line in proc.stdout.splitlines():
        if line.startswith("{"):
            found[json.loads(line)["scenario"]] = json.loads(line)
    assert set(found) == set(TRIED), proc.stderr[-3000:]
    return {"root": root, **found}


@pytest.mark.parametrize("name,saved,failed_file", [
    ("full-mid-run", 1, "round-2.jsonl"), ("read-only-mid-run", 1, "round-2.jsonl"), ("full-at-test", 2, "results_")])
def test_a_write_that_fails_mid_run_stops_the_run_and_keeps_the_last_round(scenarios, name, saved, failed_file):
    found = scenarios[name]
    reason = "No space left on device" if name.startswith("full") else "Read-only file system"
    saved_text = f"rounds 0-{saved} are saved in "
    assert found["broken"] and found["exit"] == 2, found
    assert found["line"].startswith("lm-eval-abo: error: cannot write ") and f": {reason}; {saved_text}" in found["line"]
    assert failed_file in found["line"].split(f": {reason}")[0]
    assert found["line"].endswith("; rerun with --resume to continue from there")
    assert found["state_round"] == saved and found["artifact_rounds"] == list(range(saved + 1))
    assert found["report_rounds"] == saved + 1 and not found["tested"]
    assert found["temporary_files"] == [] and found["unreadable_results"] == []
    assert found["resume_exit"] == 0 and found["resumed_rounds"] == [0, 1, 2] and found["resumed_tested"]
    assert found["resumed_unreadable_results"] == []
    case, tried = TRIED[name]
    SECTION.record(case, tried, f"exit 2: {code(normalise(found['line'], scenarios['root']))}; state, artifact and "
                   f"report hold round {saved}, whole, no temporary or half-written file is left; `--resume` "
                   "finishes the run")


def test_an_output_folder_that_is_read_only_from_the_start_is_one_line(scenarios):
    found = scenarios["read-only-from-the-start"]
    assert found["exit"] == 2 and found["line"].endswith(": Read-only file system; choose another --output")
    case, tried = TRIED["read-only-from-the-start"]
    SECTION.record(case, tried, f"exit 2 before anything is loaded: {code(normalise(found['line'], scenarios['root']))}")
