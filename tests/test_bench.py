"""The benchmarks in bench/ import and their stand-ins work (no timing here: bench/README.md)."""

import importlib
import sys

import pytest
from conftest import ROOT

BENCHMARKS = ["harness_overhead", "caching", "batched_scoring", "end_to_end", "method_cost", "peers", "profile_optimize", "grid",
              "selection", "copying"]


@pytest.fixture(autouse=True)
def bench_on_path(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "bench"))
    yield
    for name in [*BENCHMARKS, "record", "fakes", "meter", "latency_server"]:
        sys.modules.pop(name, None)


@pytest.mark.parametrize("name", BENCHMARKS)
def test_benchmark_imports_and_has_a_main(name):
    assert callable(importlib.import_module(name).main)


def test_instant_stand_ins_drive_a_scoring_pass_and_every_reply_parses():
    from conftest import make_bridge
    from fakes import InstantTarget, instant_reply

    from lm_eval_abo.infra.metaprompts import tagged
    from lm_eval_abo.optimizers.procedure import parse_location, parse_steps

    reply = instant_reply("(The correct final answer is 7; show how the steps reach it.)")
    assert all(tagged(reply, tag) for tag in ("prompt", "reason", "summary", "solution", "steps"))
    assert "So the answer is 7." in tagged(reply, "solution")[0]
    assert parse_steps(reply) and parse_location(reply, 4)
    bridge = make_bridge(InstantTarget())
    [score] = bridge.score([bridge.default_prompt], "dev", [0, 1, 2])
    assert score.n == 3 and bridge.target_requests == 3
