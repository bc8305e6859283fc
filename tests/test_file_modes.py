"""Files as the umask says: everything the commands write gets the mode a plain open() gives it (0o666
less the umask; folders 0o777 less it), as lm-eval's own results files do, and atomic writes stay atomic.
The commands run in-process (rule-based target or the scripted server of tests/fakeserver.py) under
umask 022 and 077."""

import json
import os
import stat

import pytest
from conftest import rule_lm
from fakeserver import FakeServer, target_args, target_or_optimizer
from reliability import Section

from lm_eval_abo import cli
from lm_eval_abo.config import OptimizeConfig
from lm_eval_abo.infra.files import publish, write_text_atomic
from lm_eval_abo.run.optimize import optimize
from lm_eval_abo.run.paper_table import paper_table

TASK = "abo_object_counting_synth"
SECTION = Section("file-modes", "Files as the umask says (tests/test_file_modes.py)", [
    "umask 022", "umask 077", "a file whose mode was changed", "model files assembled into the cache"])


table = SECTION.fixture()


@pytest.fixture
def umask(request):
    before = os.umask(request.param)
    yield request.param
    os.umask(before)


def modes(root) -> dict[str, set[str]]:
    """Every file's and folder's mode under `root`, as octal text, with the paths that have it."""
    found: dict[str, set[str]] = {}
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            path = os.path.join(folder, name)
            found.setdefault(oct(stat.S_IMODE(os.lstat(path).st_mode)), set()).add(os.path.relpath(path, root))
    return found


def everything(tmp_path, server) -> list[str]:
    """Every command that writes files, into tmp_path/out; returns what each wrote there."""
    out = tmp_path / "out"
    settings = dict(task=TASK, optimizer="openai/fake", optimizer_args={"api_base": server.base_url, "api_key": "x"},
                    rounds=1, beam=1, train_limit=4, dev_limit=2, test_limit=2, minibatch=2, optimizer_cache=None)
    optimize(OptimizeConfig(method="ape", method_args={"paraphrases": 1}, output=str(out / "runs"), **settings),
             out=lambda line: None, lm=rule_lm())
    paper_table(OptimizeConfig(output=str(out / "table"), model="local-completions", model_args=target_args(server),
                               **settings), [TASK], ["ape"], out=lambda line: None)
    artifact = out / "runs" / TASK / "ape" / "best.yaml"
    promptfoo = {"prompts": ["Answer: {{q}}"], "providers": ["openai:gpt-4o-mini"],
                 "tests": [{"vars": {"q": f"question {i}"}, "assert": [{"type": "equals", "value": "a"}]} for i in range(6)]}
    (tmp_path / "promptfooconfig.yaml").write_text(json.dumps(promptfoo))
    commands = [
        ["leaderboard", str(out / "runs"), "-o", str(out / "board")],
        ["export", "promptfoo", "-o", str(out / "promptfoo" / "promptfooconfig.yaml"), str(artifact)],
        ["export", "lm-eval", "-o", str(out / "exported"), str(artifact)],
        ["import", "promptfoo", str(tmp_path / "promptfooconfig.yaml"), "-o", str(out / "imported")],
    ]
    for argv in commands:
        assert cli.main(argv) == 0, argv
    return ["optimize", "paper-table", *(" ".join(a for a in argv[:2] if not a.startswith("/")) for argv in commands)]


@pytest.mark.parametrize("umask", [0o022, 0o077], indirect=True, ids=["022", "077"])
def test_every_file_written_has_the_mode_a_plain_open_gives(tmp_path, umask):
    with FakeServer(target_or_optimizer) as server:
        commands = everything(tmp_path, server)
    plain = tmp_path / "plain"
    with open(plain, "w"):
        pass
    file_mode, folder_mode = stat.S_IMODE(plain.stat().st_mode), stat.S_IMODE((tmp_path / "out").stat().st_mode)
    assert (file_mode, folder_mode) == (0o666 & ~umask, 0o777 & ~umask)
    found = modes(tmp_path / "out")
    folders = {p for p in found.get(oct(folder_mode), set()) if (tmp_path / "out" / p).is_dir()}
    assert set(found) <= {oct(file_mode), oct(folder_mode)}, {m: sorted(p)[:5] for m, p in found.items()}
    files = found[oct(file_mode)]
    expected = [f"runs/{TASK}/ape/{name}" for name in ("best.yaml", "state.json", "report.md", f"{TASK}_abo.yaml",
                                                       ".lock")]
    expected += ["table/paper_table.md", "table/paper_table.json", "board/leaderboard.md", "board/leaderboard.csv",
                 "board/leaderboard.html", "promptfoo/promptfooconfig.yaml", f"exported/{TASK}_abo.yaml"]
    assert set(expected) <= files and any(f.startswith("imported/") and f.endswith(".yaml") for f in files)
    assert any("/results_" in f for f in files), "lm-eval's own results files too"
    assert not [f for f in files if f.endswith(".tmp")]
    kinds = sorted({os.path.splitext(f)[1] or os.path.basename(f) for f in files})
    SECTION.record(f"umask {umask:03o}", f"{', '.join(f'`{c}`' for c in commands)} under `umask {umask:03o}`",
                   f"all {len(files)} files ({', '.join(kinds)}) are {file_mode:04o} and all {len(folders)} folders "
                   f"{folder_mode:04o}, as `open()` and `mkdir` make them; no temporary file is left")


@pytest.mark.parametrize("umask", [0o022], indirect=True, ids=["022"])
def test_a_rewrite_keeps_a_files_own_mode_and_replaces_it_whole(tmp_path, umask):
    path = write_text_atomic(tmp_path / "best.yaml", "first\n")
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    os.chmod(path, 0o640)
    before = path.stat().st_ino
    write_text_atomic(path, "second\n")
    mode, left = stat.S_IMODE(path.stat().st_mode), sorted(p.name for p in tmp_path.iterdir())
    assert mode == 0o640 and path.read_text() == "second\n"
    assert path.stat().st_ino != before, "written beside and renamed over, never in place"
    assert left == ["best.yaml"]
    SECTION.record("a file whose mode was changed", "`chmod 640 best.yaml`, then the run writes it again",
                   f"its mode after the rewrite: {mode:04o}, as with `open()`; the new text arrives by a rename "
                   f"({'a new inode' if path.stat().st_ino != before else 'the same inode'}); files left: {left}")


@pytest.mark.parametrize("umask", [0o027], indirect=True, ids=["027"])
def test_a_model_file_is_published_whole_with_the_umasks_mode(tmp_path, umask):
    target = tmp_path / "cache" / "model.gguf"
    seen = []

    def make(tmp):
        seen.append(tmp)
        assert tmp.parent == target.parent and not target.exists(), "written beside, out of sight"
        tmp.write_bytes(b"GGUF" * 1000)

    publish(target, make)
    assert target.read_bytes() == b"GGUF" * 1000 and stat.S_IMODE(target.stat().st_mode) == 0o640
    assert not seen[0].exists()

    def broken(tmp):
        tmp.write_bytes(b"half")
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError):
        publish(target, broken)
    assert target.read_bytes() == b"GGUF" * 1000 and sorted(p.name for p in target.parent.iterdir()) == ["model.gguf"]
    SECTION.record("model files assembled into the cache",
                   "an embedded model file assembled into the user's cache under `umask 027`, once whole and once "
                   "failing half-way",
                   "it appears whole by one rename, mode 0640; a failed assembly leaves the earlier file and no "
                   "partial file (runs that start at once each assemble their own copy)")
