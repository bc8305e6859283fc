"""Planted API keys (an environment variable, `--model_args api_key=...`, `--optimizer_args api_key=...`)
are used by real commands against a server on 127.0.0.1, then searched for in every file the commands
wrote (artifact, state, report, lm-eval results and samples, optimizer cache, promptfoo export) and in
everything they printed."""

import json
import os
from pathlib import Path

import pytest
from conftest import bin_path, run_cli
from fakeserver import FakeServer, optimizer_default, reply
from reliability import Section

from lm_eval_abo.infra.redact import MASK, scrubbed_output, secret_values

TASK = "abo_object_counting_synth"
ENV_KEY = "sk-test-PLANTED-env-5f2b9c"
MODEL_KEY = "sk-test-PLANTED-model-args-8d1e4a"
OPTIMIZER_KEY = "sk-test-PLANTED-optimizer-3c7a0f"
PLANTED = (ENV_KEY, MODEL_KEY, OPTIMIZER_KEY)

SECTION = Section("secrets", "Secrets (tests/test_secrets.py)", [
    "optimize", "lm-eval-abo run", "export promptfoo", "stock lm_eval", "split writes"])


table = SECTION.fixture()


def answer(request):
    """The optimizer's tagged instructions; the target's completions."""
    return optimizer_default(request) if request.path.endswith("/chat/completions") else reply(" So the answer is 3.")


@pytest.fixture(scope="module")
def server():
    with FakeServer(answer) as s:
        yield s


def target_args(server) -> str:
    return (f"model=fake,base_url={server.base_url}/completions,tokenizer_backend=None,tokenized_requests=False,"
            f"max_retries=1,api_key={MODEL_KEY}")


def command(*args: str, cwd: Path):
    env_before = os.environ.get("OPENAI_API_KEY")
    os.environ["OPENAI_API_KEY"] = ENV_KEY  # run_cli passes the environment on
    try:
        return run_cli(*args, cwd=cwd)
    finally:
        if env_before is None:
            os.environ.pop("OPENAI_API_KEY")
        else:
            os.environ["OPENAI_API_KEY"] = env_before


def leaks(folder: Path, stdout: str, stderr: str) -> set[tuple[str, str]]:
    """(where, which key) for every planted key, or any 12 characters of it past the shared prefix, found."""
    names = {ENV_KEY: "env", MODEL_KEY: "model_args", OPTIMIZER_KEY: "optimizer_args"}
    places = [(str(p), p.read_bytes()) for p in sorted(folder.rglob("*")) if p.is_file()]
    places += [("stdout", stdout.encode()), ("stderr", stderr.encode())]
    return {(where, names[key]) for key in PLANTED for where, data in places
            if any(key[i : i + 12].encode() in data for i in range(len("sk-te"), len(key) - 11))}


def searched(folder: Path) -> str:
    files = [p for p in folder.rglob("*") if p.is_file()]
    kinds = sorted({p.suffix or p.name for p in files})
    return f"{len(files)} files ({', '.join(kinds)}) and stdout/stderr"


def test_optimize_writes_and_prints_no_key(server, tmp_path):
    proc = command(
        bin_path("lm-eval-abo"), "optimize", "--task", TASK, "--method", "ape", "--rounds", "1", "--beam", "1",
        "--train-limit", "4", "--dev-limit", "3", "--test-limit", "3", "--minibatch", "2",
        "--method-args", "paraphrases=1",
        "--model", "local-completions", "--model_args", target_args(server), "--optimizer", "openai/fake",
        "--optimizer_args", f"api_base={server.base_url},api_key={OPTIMIZER_KEY}", "--optimizer-cache", "cache",
        "--metadata", "abo_n_train=8,abo_n_dev=4,abo_n_test=4", "--output", "runs", "--verbose", cwd=tmp_path,
    )
    headers = [r.headers.get("Authorization", "") for r in server.requests]
    assert f"Bearer {OPTIMIZER_KEY}" in headers and f"Bearer {ENV_KEY}" in headers, "both keys were really used"
    run_dir = tmp_path / "runs" / TASK / "ape"
    assert {"best.yaml", "state.json", "report.md"} <= {p.name for p in run_dir.iterdir()}
    assert list((tmp_path / "cache").rglob("*")) and list(run_dir.rglob("samples_*.jsonl"))
    assert leaks(tmp_path, proc.stdout, proc.stderr) == set()
    assert f"api_key={MASK}" in (run_dir / "best.yaml").read_text()
    SECTION.record("optimize", "`lm-eval-abo optimize --verbose` with the target over `local-completions` and the "
                   "optimizer over litellm, all three keys planted",
                   f"the server received the optimizer and environment keys (they were used); none in "
                   f"{searched(tmp_path)}; the artifact records `api_key=***`")


@pytest.mark.slow  # lm-eval's run indexes all its tasks: ~10 s
def test_lm_eval_abo_run_writes_and_prints_no_key(server, tmp_path):
    proc = command(bin_path("lm-eval-abo"), "run", "--model", "local-completions", "--model_args", target_args(server),
                   "--tasks", TASK, "--limit", "2", "--output_path", "out", "--log_samples", cwd=tmp_path)
    results = json.loads(next((tmp_path / "out").rglob("results_*.json")).read_text())
    assert results["config"]["model_args"]["api_key"] == MASK
    assert results["configs"][TASK]["metadata"]["api_key"] == MASK
    assert leaks(tmp_path, proc.stdout, proc.stderr) == set()
    SECTION.record("lm-eval-abo run", "`lm-eval-abo run --model local-completions --model_args ...,api_key=KEY "
                   "--log_samples`",
                   f"none in {searched(tmp_path)}; results show `api_key: ***` in `config.model_args` "
                   "and `configs.<task>.metadata`")


@pytest.mark.slow  # the stock CLI indexes all of lm-eval's tasks: ~10 s
def test_the_stock_cli_keeps_model_args_secrets_only_where_lm_eval_itself_writes_them(server, tmp_path):
    from conftest import ROOT

    proc = command(bin_path("lm_eval"), "--model", "local-completions", "--model_args", target_args(server),
                   "--include_path", str(ROOT / "task_configs"), "--tasks", TASK, "--limit", "2",
                   "--output_path", "out", "--log_samples", cwd=tmp_path)
    results_path = next((tmp_path / "out").rglob("results_*.json"))
    results = json.loads(results_path.read_text())
    assert results["configs"][TASK]["metadata"]["api_key"] == MASK, "the abo task masks what lm-eval copied in"
    assert results["config"]["model_args"]["api_key"] == MODEL_KEY, "lm-eval's own copy: not ours to change"
    lm_eval_own = {(str(results_path), "model_args"), ("stdout", "model_args"), ("stderr", "model_args")}
    assert leaks(tmp_path, proc.stdout, proc.stderr) == lm_eval_own
    SECTION.record("stock lm_eval", "`lm_eval --model local-completions --model_args ...,api_key=KEY` on an abo task",
                   "`configs.<task>.metadata` is masked by the abo task; lm-eval itself writes the model_args key in "
                   "`config.model_args`, prints it and logs it (the same command through `lm-eval-abo run` does not): "
                   "pass keys to the stock CLI as environment variables (`OPENAI_API_KEY`), which appear nowhere")


def test_promptfoo_export_holds_no_key(server, tmp_path):
    from lm_eval_abo.artifact import store
    from lm_eval_abo.artifact.prompt import Prompt

    artifact = store.Artifact(task=TASK, method="manual", prompt=Prompt(instruction="Count."),
                              target={"model": "local-completions", "model_args": f"model=fake,api_key={MASK}"})
    store.save(artifact, tmp_path / "best.yaml")
    proc = command(bin_path("lm-eval-abo"), "export", "promptfoo", "best.yaml", "-o", "promptfooconfig.yaml",
                   "--api-base", server.base_url, "--limit", "2", cwd=tmp_path)
    assert leaks(tmp_path, proc.stdout, proc.stderr) == set()
    assert "OPENAI_API_KEY" in (tmp_path / "promptfooconfig.yaml").read_text(), "the key is named, not copied"
    SECTION.record("export promptfoo", "`lm-eval-abo export promptfoo` with `OPENAI_API_KEY` set",
                   "the config names the variable (`OPENAI_API_KEY`), never its value; nothing printed holds it")


def test_a_key_split_across_writes_is_still_masked(capsys):
    secrets = secret_values({"api_key": OPTIMIZER_KEY}, environ={})
    with scrubbed_output(secrets):
        print(f"first half {OPTIMIZER_KEY[:10]}", end="", flush=False)
        print(f"{OPTIMIZER_KEY[10:]} second half")
        print("a progress bar\r", end="", flush=True)
    out = capsys.readouterr().out
    assert OPTIMIZER_KEY not in out and out == f"first half {MASK} second half\na progress bar\r"
    SECTION.record("split writes", "a key printed in two pieces by two `write` calls",
                   "masked all the same: the end of an unfinished line is held back until the next write or flush")


def test_only_secret_looking_keys_count():
    found = secret_values({"api_key": "k" * 20, "tokenizer_backend": "huggingface", "max_tokens": "12345678",
                           "headers": {"Authorization": "Bearer abcdefghij"}, "auth_token": "short"},
                          environ={"HF_TOKEN": "hf_0123456789", "PATH": "/usr/bin:/bin"})
    assert found == {"k" * 20, "Bearer abcdefghij", "abcdefghij", "hf_0123456789"}
