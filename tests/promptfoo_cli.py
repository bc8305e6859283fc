"""The real promptfoo CLI (pinned, installed from npm on first use) and the promptfoo configs the tests share:
a config imported as a task and run back through promptfoo's echo provider, an llm-rubric task, and the scripted
server that targets, grades and optimizes it."""

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from conftest import ROOT
from fakeserver import FakeServer, optimizer_default, reply, target_or_optimizer

from lm_eval_abo.artifact import store
from lm_eval_abo.artifact.prompt import Prompt
from lm_eval_abo.config import HarnessSettings
from lm_eval_abo.promptfoo.export import ExportOptions, export, load_task, requests
from lm_eval_abo.promptfoo.importer import import_config


PROMPTFOO_VERSION = "0.120.0"


def promptfoo_bin() -> str:
    """The pinned promptfoo CLI, installed from the npm registry into the project's node_modules/ on first
    use (about 2 minutes, once); the tests that need it skip only where Node is absent."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.skip("Node.js and npm are not installed: the promptfoo CLI cannot run here")
    package = ROOT / "node_modules" / "promptfoo"
    installed = package / "package.json"
    if not installed.exists() or json.loads(installed.read_text())["version"] != PROMPTFOO_VERSION:
        # promptfoo's better-sqlite3 compiles against Node's headers, which node-gyp would download (no
        # network here): point it at the headers the system's Node ships, unless npm is told otherwise
        env = dict(os.environ)
        node_prefix = Path(shutil.which("node")).resolve().parent.parent
        if (node_prefix / "include" / "node").is_dir():
            env.setdefault("npm_config_nodedir", str(node_prefix))
        proc = subprocess.run(["npm", "install", "--no-save", "--no-package-lock", "--no-audit", "--no-fund", "--prefix", str(ROOT),
                               f"promptfoo@{PROMPTFOO_VERSION}"], capture_output=True, text=True, timeout=1200, env=env)
        assert proc.returncode == 0, f"npm could not install promptfoo@{PROMPTFOO_VERSION}:\n{proc.stderr[-3000:]}"
    drizzle = package / "drizzle"
    if not drizzle.exists():  # promptfoo 0.120.0 looks for its migrations there
        drizzle.symlink_to("dist/drizzle")
    return str(ROOT / "node_modules" / ".bin" / "promptfoo")


def run_promptfoo(config: Path, out: Path, *extra: str) -> dict:
    """`promptfoo eval` offline, its state in a temporary directory; returns the results JSON."""
    env = {**os.environ, "PROMPTFOO_DISABLE_TELEMETRY": "1", "PROMPTFOO_DISABLE_UPDATE": "1",
           "PROMPTFOO_CONFIG_DIR": str(out.parent / "promptfoo-state"), "OPENAI_API_KEY": "local-server-needs-no-key"}
    proc = subprocess.run([promptfoo_bin(), "eval", "-c", str(config), "-o", str(out), "--no-cache", "--no-table", *extra],
                          capture_output=True, text=True, env=env, timeout=600, cwd=config.parent)
    assert out.exists(), f"promptfoo wrote no results (exit {proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return json.loads(out.read_text())["results"]


def with_echo(config: Path) -> Path:
    """The same config with promptfoo's echo provider, whose output is the rendered prompt."""
    data = yaml.safe_load(config.read_text())
    data["providers"] = ["echo"]
    echo = config.with_name("echo.yaml")
    echo.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True))
    return echo


def exported_requests(artifact: Path, options: ExportOptions, harness: HarnessSettings, chat: bool = False):
    task, harness, indices = load_task(store.load(artifact), options, harness)
    return task, requests(task, harness, indices, chat)


def imported_round_trip(config: Path, tmp_path: Path, task_name: str, **prompt):
    """A promptfoo config imported as a task, a manual artifact of it (`prompt`: its fields, the user turn),
    exported for promptfoo's echo provider and run by the real promptfoo CLI; returns promptfoo's results,
    the task and the requests lm-eval builds from the same export."""
    path, _ = import_config(config, tmp_path / "tasks", task_name=task_name, n_train=1, n_dev=1)
    artifact = store.save(store.Artifact(task=task_name, method="manual", prompt=Prompt(placement="user", **prompt)),
                          tmp_path / "best.yaml")
    options, harness = ExportOptions(provider="echo"), HarnessSettings(include_path=[str(path.parent)])
    export(artifact, tmp_path / "export.yaml", options, harness)
    found = run_promptfoo(tmp_path / "export.yaml", tmp_path / "results.json")
    task, reqs = exported_requests(artifact, options, harness)
    return found, task, reqs


RUBRIC_SYSTEM = "You are grading output according to a user-specified rubric."


def judged_task(folder) -> str:
    config = folder / "promptfooconfig.yaml"
    config.write_text(yaml.safe_dump({"prompts": ["Count the items.\n\nQ: {{ q }}\nA:"], "tests": [
        {"vars": {"q": f"I have {i} apples and {i % 3} pears. How many fruits?"},
         "assert": [{"type": "llm-rubric", "value": "the answer holds the digit 3"}]} for i in range(12)]}))
    import_config(config, folder / "tasks", task_name="judged", n_train=5, n_dev=3)
    return str(folder / "tasks")


def judged_server() -> FakeServer:
    """The target answers a number (lm-eval local-completions), the grader passes a reply that holds a 3,
    the optimizer writes a new instruction per request."""
    def answer(request):
        messages = request.body.get("messages") or [{}]
        if str(messages[0].get("content", "")).startswith(RUBRIC_SYSTEM):
            shown = messages[1]["content"].split("</Output>")[0]
            return reply(json.dumps({"reason": "looked for a 3", "pass": "3" in shown, "score": float("3" in shown)}))
        return optimizer_default(request) if request.path.endswith("/chat/completions") else target_or_optimizer(request)

    return FakeServer(answer)
