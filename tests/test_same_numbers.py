"""Every method, replayed against its recorded run on the embedded models (tests/recorded_runs.py): the same
best prompt, dev and test scores and calls per round, and every request answered by the recorded caches
(one the code sends differently would reach the model and be billed)."""

import json
import shutil

import pytest
from recorded_runs import DATA, METHOD_ARGS, run

pytestmark = pytest.mark.slow
RECORDED = json.loads((DATA / "runs.json").read_text())


def test_every_method_has_a_recorded_run():
    assert set(RECORDED) == set(METHOD_ARGS)


@pytest.mark.parametrize("method", sorted(METHOD_ARGS))
def test_a_method_repeats_its_recorded_run(method, embedded_target, tmp_path):
    for cache in ("target-cache", "optimizer-cache"):
        shutil.copytree(DATA / cache, tmp_path / cache)
    found, outcome = run(method, tmp_path, embedded_target)
    usage = outcome.artifact_data.usage
    assert usage["optimizer"]["calls"] == usage["optimizer"]["cache_hits"], "an optimizer call the recording never made"
    assert usage["target"]["calls"] == usage["target"]["cache_hits"], "a target request the recording never made"
    assert found == RECORDED[method]
