"""Run directories written before the package was split into layers still resume and export.

tests/data/old_runs holds three runs that commit cd0678e's code wrote (ape; gepa, with its engine state
and the seed it kept in gepa/seed.json; abo), one round each, at the settings below, against the
rule-based target and the scripted optimizer server. Today's code resumes each for a second round and
exports its artifact as a plain lm-eval task."""

import json
import shutil
from pathlib import Path

import pytest
import yaml
from conftest import rule_lm
from fakeserver import FakeServer

from lm_eval_abo.artifact import store
from lm_eval_abo.config import HarnessSettings, OptimizeConfig
from lm_eval_abo.infra.files import read_json
from lm_eval_abo.run.export import export_artifact
from lm_eval_abo.run.optimize import optimize

OLD = Path(__file__).parent / "data" / "old_runs"
TASK = "abo_object_counting_synth"
ARGS = {"ape": {"paraphrases": 1}, "gepa": {"proposals": 1, "reflection_minibatch": 2},
        "abo": {"demos": 1, "demo_attempts": 2, "max_errors": 1, "revisions": 1}}


@pytest.mark.parametrize("method", sorted(ARGS))
def test_an_old_run_directory_resumes_for_another_round_and_exports(tmp_path, method):
    shutil.copytree(OLD, tmp_path / "runs")
    run_dir = tmp_path / "runs" / TASK / method
    old = read_json(run_dir / "state.json")["state"]
    assert old["round"] == 1
    with FakeServer() as server:
        saved = read_json(run_dir / "state.json")  # the scripted server is back, at a new port
        saved["config"]["optimizer_args"]["api_base"] = server.base_url
        (run_dir / "state.json").write_text(json.dumps(saved))
        config = OptimizeConfig(task=TASK, method=method, method_args=ARGS[method], optimizer="openai/fake",
                                optimizer_args={"api_base": server.base_url, "api_key": "x"}, optimizer_cache=None,
                                rounds=2, patience=0, beam=1, train_limit=4, dev_limit=2, test_limit=2, minibatch=2,
                                seed=7, output=str(tmp_path / "runs"), resume=True)
        lines = []
        optimize(config, out=lines.append, lm=rule_lm())
    assert any("resuming" in line for line in lines), lines
    artifact = store.load(run_dir / "best.yaml", task=TASK)
    assert [r["round"] for r in artifact.trace] == [0, 1, 2]
    kept = [[c["key"] for c in r["candidates"]] for r in artifact.trace[:2]]
    assert kept == [[c["key"] for c in r["candidates"]] for r in old["trace"]], "the old rounds are kept as they were"
    if method == "gepa":
        seed = read_json(OLD / TASK / "gepa" / "gepa" / "seed.json")["prompt"]
        assert seed["instruction"] == old["nodes"][0]["prompt"]["instruction"], "the old seed file was read back"

    path, checked = export_artifact(run_dir / "best.yaml", tmp_path / "exported", None, HarnessSettings())
    assert checked == 2 and yaml.safe_load(path.read_text().replace("!function", ""))["task"] == path.stem
