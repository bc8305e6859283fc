"""Runs `lm-eval-abo optimize` (cli.main, in this process) on output folders that fill up or turn
read-only mid-run, on real file systems: each scenario mounts a small tmpfs. Started by
tests/test_disk_full.py inside a private mount namespace (`unshare --mount`), so nothing it mounts is
seen outside and everything goes when it ends. The target is the rule-based one of the tests, the
optimizer the scripted server; prints one JSON line per scenario with what it observed.

    unshare --mount --propagation private python tests/unwritable_run.py ROOT
"""

import contextlib
import io
import json
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from conftest import rule_lm
from fakeserver import FakeServer

from lm_eval_abo import cli
from lm_eval_abo.artifact import store
from lm_eval_abo.infra.files import read_json
from lm_eval_abo.run import evaluation, session

TASK = "abo_object_counting_synth"


def mount(folder: Path, *options: str) -> None:
    subprocess.run(["mount", "-t", "tmpfs", "-o", ",".join(["size=8m", *options]), "tmpfs", str(folder)], check=True)


def fill(folder: Path) -> None:
    """Write one file until the file system has no block left."""
    with open(folder / "filler", "wb", buffering=0) as f:
        for size in (1 << 20, 4096, 1):
            try:
                while True:
                    f.write(b"\0" * size)
            except OSError:
                pass


def read_only(folder: Path) -> None:
    """Stack a read-only bind mount of the folder on itself: files the run holds open stay as they are
    (a plain `remount,ro` is refused while any is open for writing), every new write fails."""
    subprocess.run(["mount", "--bind", str(folder), str(folder)], check=True)
    subprocess.run(["mount", "-o", "remount,bind,ro", str(folder)], check=True)


def writable(folder: Path) -> None:
    subprocess.run(["umount", str(folder)], check=True)


def main(argv: list[str]) -> tuple[int, str]:
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = cli.main(argv)
    lines = [line for line in err.getvalue().splitlines() if line.strip()]
    return code, lines[-1] if lines else ""


def observed(run_dir: Path) -> dict:
    """What a run directory holds: the saved round, the artifact's and the report's rounds, leftovers."""
    found = {"state_round": None, "artifact_rounds": None, "report_rounds": None, "tested": False}
    if (run_dir / "state.json").exists():
        found["state_round"] = read_json(run_dir / "state.json")["state"]["round"]
    if (run_dir / "best.yaml").exists():
        artifact = store.load(run_dir / "best.yaml", task=TASK)
        found["artifact_rounds"] = [r["round"] for r in artifact.trace]
        found["tested"] = "test" in artifact.scores
    if (run_dir / "report.md").exists():
        found["report_rounds"] = (run_dir / "report.md").read_text().count("## Round")
    found["temporary_files"] = sorted(p.name for p in run_dir.rglob("*.tmp"))
    found["unreadable_results"] = []
    for path in run_dir.rglob("results_*.json"):
        try:
            json.loads(path.read_text())
        except ValueError:
            found["unreadable_results"].append(path.name)
    return found


def scenario(root: Path, name: str, breaks, mends, when: str) -> dict:
    """`optimize --rounds 2` on a fresh tmpfs; `breaks(folder)` runs at `when` (a round's first optimizer
    request, or the start of the test evaluation); then `mends(folder)` and `--resume`."""
    folder = root / name
    folder.mkdir()
    mount(folder)
    broken = []

    def maybe_break(kind: str) -> None:
        if kind == when and not broken:
            breaks(folder)
            broken.append(kind)

    with FakeServer() as server:
        variations = []

        def on_request(request):
            if "Write a variation" in request.text:
                variations.append(request)
                if len(variations) == 2:  # round 2 asks: rounds 0 and 1 are saved
                    maybe_break("round 2")

        server.on_request = on_request
        original = evaluation.evaluate

        def evaluate(*args, **kwargs):
            maybe_break("test evaluation")
            return original(*args, **kwargs)

        evaluation.evaluate = evaluate
        argv = ["optimize", "--task", TASK, "--method", "ape", "--rounds", "2", "--beam", "1", "--train-limit", "4",
                "--dev-limit", "2", "--test-limit", "2", "--minibatch", "2", "--method-args", "paraphrases=1",
                "--optimizer", "openai/fake", "--optimizer_args", f"api_base={server.base_url},api_key=x",
                "--no-optimizer-cache", "--model", "rule-based", "--model_args", "model=rule-based",
                "--output", str(folder / "runs")]
        try:
            code, line = main(argv)
            run_dir = folder / "runs" / TASK / "ape"
            result = {"scenario": name, "broken": broken == [when], "exit": code, "line": line, **observed(run_dir)}
            mends(folder)
            resumed, resumed_line = main([*argv, "--resume"])
            after = observed(run_dir)
            result.update(resume_exit=resumed, resume_line=resumed_line, resumed_rounds=after["artifact_rounds"],
                          resumed_tested=after["tested"], resumed_unreadable_results=after["unreadable_results"])
        finally:
            evaluation.evaluate = original
    return result


def run(root: Path) -> None:
    from lm_eval.api.registry import register_model

    register_model("rule-based")(type(rule_lm()))  # `--model rule-based`: the target the tests use
    session.Target.load = lambda self: rule_lm()

    def remove_filler(folder):
        (folder / "filler").unlink()

    cases = [
        ("full-mid-run", fill, remove_filler, "round 2"),
        ("read-only-mid-run", read_only, writable, "round 2"),
        ("full-at-test", fill, remove_filler, "test evaluation"),
    ]
    for name, breaks, mends, when in cases:
        print(json.dumps(scenario(root, name, breaks, mends, when)), flush=True)

    folder = root / "read-only-from-the-start"
    folder.mkdir()
    mount(folder, "ro")
    with FakeServer() as server:
        code, line = main(["optimize", "--task", TASK, "--method", "ape", "--rounds", "0", "--optimizer", "openai/fake",
                           "--optimizer_args", f"api_base={server.base_url},api_key=x", "--model", "rule-based",
                           "--output", str(folder / "runs")])
    print(json.dumps({"scenario": "read-only-from-the-start", "exit": code, "line": line}), flush=True)


if __name__ == "__main__":
    run(Path(sys.argv[1]))
