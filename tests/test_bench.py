"""The benchmarks in bench/ parse their flags, the one that needs no model runs at a tiny size, and their
stand-ins work (no timing here: bench/README.md)."""

import importlib
import subprocess
import sys

import pytest
from conftest import ROOT

BENCHMARKS = ["harness_overhead", "caching", "batched_scoring", "end_to_end", "method_cost", "peers", "profile_optimize", "grid",
              "selection", "copying", "extra_buffers", "promptfoo_code_cost", "ladder", "embedders", "mutation"]


@pytest.fixture(autouse=True)
def bench_on_path(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "bench"))
    yield
    for name in [*BENCHMARKS, "record", "fakes", "meter", "latency_server"]:
        sys.modules.pop(name, None)


def test_every_script_in_bench_is_listed():
    scripts = {p.stem for p in (ROOT / "bench").glob("*.py")} - {"record", "fakes", "meter", "latency_server"}
    assert scripts == set(BENCHMARKS)


@pytest.mark.parametrize("name", BENCHMARKS)
def test_benchmark_parses_its_flags(name):
    """`--help` builds the script's parser and exits 0 before any model loads."""
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / f"{name}.py"), "--help"], capture_output=True, text=True,
                          timeout=120, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.startswith(f"usage: {name}.py [-h]")
    assert callable(importlib.import_module(name).main)


def test_selection_benchmark_runs_at_a_tiny_size(monkeypatch, capsys):
    """The one benchmark that needs no model, run through its main at a tiny size: every setting gets a row of
    the figures it promises (the figures themselves are the benchmark's, not asserted here)."""
    import record
    import selection

    saved = {}
    monkeypatch.setattr(record, "save", lambda name, data: saved.update({name: data}))
    monkeypatch.setattr(sys, "argv", ["selection.py", "--rounds", "6", "--searches", "2", "--seed", "7"])
    selection.main()
    data = saved["selection"]
    assert (data["rounds"], data["searches"], data["seed"]) == (6, 2, 7)
    assert [(r["candidates"], r["dev"], r["beam"]) for r in data["racing"]] == [s[:3] for s in selection.RACING_SETTINGS]
    for row in data["racing"]:
        assert row["requests/round full"] == row["candidates"] * row["dev"], "full selection scores every candidate on all dev"
        # racing never pays more than full scoring; it saves only where its test can drop someone
        assert row["requests/round racing"] <= row["requests/round full"]
        assert 0 <= row["true best dropped"] <= 1 and row["stated rate"] == selection.selection.RACE_ALPHA
        assert row["fewer requests"] == pytest.approx(row["requests/round full"] / row["requests/round racing"])
        assert 0 <= row["same winner"] <= row["same or within noise"] <= 1
    assert [(r["dev"], r["candidates/round"], r["rounds"]) for r in data["acceptance"]] == list(selection.ACCEPTANCE_SETTINGS)
    for row in data["acceptance"]:
        assert row["paired - score"] == pytest.approx(row["true accuracy, paired"] - row["true accuracy, score"])
    assert "| candidates | dev | beam |" in capsys.readouterr().out


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
