"""The commands around the harness on the real path: `lm-eval-abo serve` (the embedded target on 127.0.0.1)
answers the stock `lm_eval` line it prints, `tasks-path` is what that line gives `--include_path` (the
shell runs it there), `tasks` lists the tasks there, and `check --paired` / `--stderr-aware` judge real lm-eval results of two prompts
scored by the stock CLI against that server."""

import json
import math
import os
import re
import shlex
import subprocess
from pathlib import Path

import numpy as np
import pytest
from conftest import bin_path, results_file, run_cli, samples
from scipy.stats import bootstrap

from lm_eval_abo.artifact import store
from lm_eval_abo.artifact.prompt import Demonstration, Prompt

pytestmark = pytest.mark.slow
TASK = "abo_object_counting_synth"
N = 12  # test documents each prompt is scored on


@pytest.fixture(scope="module")
def served():
    """`lm-eval-abo serve --model gemma-3-270m` as a user starts it; what it printed until it was ready."""
    process = subprocess.Popen([bin_path("lm-eval-abo"), "serve", "--model", "gemma-3-270m"], stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    printed = []
    for line in process.stdout:
        printed.append(line)
        if line.startswith("Press Ctrl-C"):
            break
    try:
        assert process.poll() is None, "".join(printed)
        yield "".join(printed)
    finally:
        process.terminate()
        process.wait(timeout=60)


def lm_eval_line(printed: str) -> str:
    """The `lm_eval` command `serve` printed (a shell line continued with backslashes)."""
    start = printed.index("lm_eval --model")
    return re.sub(r"\\\n\s*", " ", printed[start:].split("\nPress Ctrl-C")[0]).strip()


def run_printed(printed: str, folder: Path, *extra: str) -> dict:
    """The printed line run by a shell, as a user pastes it (its `$(lm-eval-abo tasks-path)` included), with
    `extra` flags after it; lm-eval's results JSON."""
    env = {**os.environ, "PATH": f"{Path(bin_path('lm_eval')).parent}{os.pathsep}{os.environ['PATH']}"}
    line = " ".join([lm_eval_line(printed), *map(shlex.quote, extra), "--log_samples", "--output_path", str(folder)])
    proc = subprocess.run(["bash", "-c", line], cwd=folder.parent, capture_output=True, text=True, env=env, timeout=900)
    assert proc.returncode == 0, f"{line}\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
    return results_file(folder)


def test_serve_answers_the_lm_eval_line_it_prints(served, tmp_path):
    assert re.search(r"gemma-3-270m ready at http://127\.0\.0\.1:\d+/v1", served)
    results = run_printed(served, tmp_path / "out", "--limit", "2")
    assert results["n-samples"][TASK]["effective"] == 2 and "exact_match,answer" in results["results"][TASK]
    port = re.search(r"127\.0\.0\.1:(\d+)", served).group(1)
    assert f"127.0.0.1:{port}/v1/completions" in str(results["config"]["model_args"])
    rows = samples(tmp_path / "out", TASK)
    assert len(rows) == 2 and any(row["resps"][0][0].strip() for row in rows), "the served model wrote the answers"


def test_tasks_path_is_the_include_path_and_tasks_lists_what_is_there():
    folder = Path(run_cli(bin_path("lm-eval-abo"), "tasks-path").stdout.strip())
    # every task YAML in the folder names its task; `tasks` lists exactly those (read here from the files)
    names = {m.group(1) for path in folder.glob("*.yaml") for m in [re.search(r"^task: (\S+)$", path.read_text(), re.M)] if m}
    assert {"abo_object_counting_synth", "abo_navigate_synth", "abo_bbh_navigate"} <= names
    listed = run_cli(bin_path("lm-eval-abo"), "tasks").stdout.splitlines()
    assert {line.split()[0] for line in listed} == names and all(len(line.split()) > 1 for line in listed)


# --- check: real results of a prompt and of a worse one ----------------------------------------------------

DEMOS = [  # worked examples written by hand: count the things of the asked kind, one by one
    ({"input": "I have a dog, a bear, a mouse, and a head of broccoli. How many animals do I have?", "target": "3"},
     "The animals: dog (1), bear (2), mouse (3). So the answer is 3."),
    ({"input": "I have a lamp and two microwaves. How many objects do I have?", "target": "3"},
     "The objects: lamp (1), two microwaves (3). So the answer is 3."),
    ({"input": "I have two cauliflowers, a plum, and an orange. How many fruits do I have?", "target": "2"},
     "The fruits: plum (1), orange (2). So the answer is 2."),
]
GOOD = Prompt(instruction="Count the things of the asked kind.",
              demonstrations=tuple(Demonstration(doc=dict(doc, id=f"d{i}"), output=out) for i, (doc, out) in enumerate(DEMOS)))
# the same worked examples with the answer as a word, which the task's filter (digits) does not read: the target
# copies the examples' form (gemma-3-270m did, with the answer prefix "So the answer is 0." it still answered)
WORDS = {"2": "two", "3": "three"}
WORSE = Prompt(instruction=GOOD.instruction, demonstrations=tuple(
    Demonstration(doc=d.doc, output=d.output.replace(f"is {d.doc['target']}.", f"is {WORDS[d.doc['target']]}."))
    for d in GOOD.demonstrations))


@pytest.fixture(scope="module")
def scored(served, tmp_path_factory):
    """The stock CLI's results (samples logged) of the good prompt and of the worse one on the same N test documents."""
    root = tmp_path_factory.mktemp("scored")
    out = {}
    for name, prompt in (("good", GOOD), ("worse", WORSE)):
        artifact = store.save(store.Artifact(task=TASK, method="manual", prompt=prompt), root / f"{name}.yaml")
        run_printed(served, root / name, "--limit", str(N), "--metadata", json.dumps({"abo_prompt": str(artifact)}))
        out[name] = root / name
    return out


def per_example(folder: Path) -> dict[int, float]:
    return {row["doc_id"]: float(row["exact_match"]) for row in samples(folder, TASK)}


def check(results: Path, baseline: Path, *flags: str) -> subprocess.CompletedProcess:
    return run_cli(bin_path("lm-eval-abo"), "check", "--results", str(results), "--baseline", str(baseline), *flags, check=False)


def test_check_paired_fails_on_a_worse_prompt_and_passes_the_other_way(scored):
    good, worse = per_example(scored["good"]), per_example(scored["worse"])
    assert sorted(good) == sorted(worse) == list(range(N))
    diffs = np.array([worse[i] - good[i] for i in range(N)])
    # the change's 95% interval by scipy's own percentile bootstrap over the same examples
    low, high = bootstrap((diffs,), np.mean, method="percentile", n_resamples=20000, random_state=0).confidence_interval
    assert diffs.mean() < -0.02 and high < 0, f"the worse prompt is worse beyond noise here ({diffs.tolist()})"

    failed = check(scored["worse"], scored["good"], "--paired")
    assert failed.returncode == 1, failed.stdout
    assert f"paired, n={N}" in failed.stdout and "❌ regression" in failed.stdout
    passed = check(scored["good"], scored["worse"], "--paired")  # the good prompt is not worse than the worse one
    assert passed.returncode == 0 and f"paired, n={N}" in passed.stdout and "✅ ok" in passed.stdout, passed.stdout


def test_check_stderr_aware_fails_when_the_drop_is_beyond_the_standard_errors(scored):
    metric = "exact_match,answer"
    (good, good_se), (worse, worse_se) = [(r[metric], r[metric.replace(",", "_stderr,")])
                                          for r in (results_file(scored[k])["results"][TASK] for k in ("good", "worse"))]
    # lm-eval's standard error of a mean of 0/1 scores: sqrt(p (1 - p) / (n - 1))
    assert good_se == pytest.approx(math.sqrt(good * (1 - good) / (N - 1)))
    allowed = max(0.02, 1.96 * math.sqrt(good_se**2 + worse_se**2))
    assert good - worse > allowed, "a drop beyond the noise of 12 examples"
    failed = check(scored["worse"], scored["good"], "--stderr-aware")
    assert failed.returncode == 1 and f"{allowed:.4f}" in failed.stdout and "stderr" in failed.stdout, failed.stdout
    assert check(scored["good"], scored["worse"], "--stderr-aware").returncode == 0
