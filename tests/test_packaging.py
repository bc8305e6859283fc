"""A plain (non-editable) install carries every module, the task YAMLs and the meta-prompt templates."""

import subprocess
import sys
import zipfile

import pytest
from conftest import ROOT

pytestmark = pytest.mark.slow


def test_wheel_ships_modules_task_configs_and_templates(tmp_path):
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), str(ROOT)],
        check=True, capture_output=True,
    )
    [wheel] = tmp_path.glob("lm_eval_abo-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    modules = {p.relative_to(ROOT).as_posix() for p in (ROOT / "lm_eval_abo").rglob("*.py")}
    assert modules <= set(names), sorted(modules - set(names))
    assert "lm_eval_abo/task_configs/_default_template_yaml" in names
    assert {f"lm_eval_abo/task_configs/{p.name}" for p in (ROOT / "task_configs").glob("*.yaml")} <= set(names)
    assert {f"lm_eval_abo/templates/{p.name}" for p in (ROOT / "templates").glob("*.j2")} <= set(names)
    assert "lm_eval_abo/promptfoo/node_worker.mjs" in names

    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(site), str(wheel)], check=True)
    probe = (
        "import sys; sys.path.insert(0, sys.argv[1]);"
        "import lm_eval_abo.cli, lm_eval_abo.optimize, lm_eval_abo.run.paper_table;"
        "from lm_eval_abo.tasks import tasks_dir; from lm_eval.tasks import TaskManager;"
        "d = tasks_dir(); assert str(d).startswith(sys.argv[1]), d;"
        "print(sorted(t for t in TaskManager(include_path=str(d), include_defaults=False).all_tasks if t.startswith('abo_')))"
    )
    out = subprocess.run([sys.executable, "-c", probe, str(site)], cwd=tmp_path, check=True, capture_output=True, text=True)
    assert "abo_object_counting_synth" in out.stdout and "abo_gsm8k" in out.stdout
