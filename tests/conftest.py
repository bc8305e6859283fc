import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

ROOT = Path(__file__).resolve().parent.parent
SHARED_BBH = ROOT.parent / "shared" / "data" / "bbh"


@pytest.fixture
def bbh_dir() -> Path:
    if not (SHARED_BBH / "navigate.json").exists():
        pytest.skip(f"real BIG-Bench-Hard files not found at {SHARED_BBH} (they exist only beside the project's CI)")
    return SHARED_BBH


@pytest.fixture(scope="session")
def gemma_server():
    """The embedded target behind an OpenAI-compatible server, as the stock lm_eval CLI reaches it."""
    from lm_eval_abo import serve

    with serve.running(["gemma-3-270m"]) as servers:
        yield servers[0]


def local_completions_args(server) -> str:
    return (
        f"model={server.model},base_url={server.base_url}/completions,"
        "tokenizer_backend=None,tokenized_requests=False,num_concurrent=1"
    )


def run_cli(*args: str, cwd: Path | None = None, check: bool = True, timeout: int = 900) -> subprocess.CompletedProcess:
    """Run a console command in a subprocess, as a user would."""
    proc = subprocess.run(
        list(args), cwd=cwd, capture_output=True, text=True, timeout=timeout, env={**os.environ, "PYTHONUNBUFFERED": "1"}
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"{args[0]} exited {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc


def bin_path(name: str) -> str:
    return str(Path(sys.executable).parent / name)


def results_file(output_dir: Path) -> dict:
    files = sorted(output_dir.rglob("results_*.json"))
    assert files, f"no results JSON under {output_dir}"
    return json.loads(files[-1].read_text())


def samples(output_dir: Path, task: str) -> list[dict]:
    files = sorted(output_dir.rglob(f"samples_{task}_*.jsonl"))
    assert files, f"no samples for {task} under {output_dir}"
    return [json.loads(line) for line in files[-1].read_text().splitlines() if line.strip()]
