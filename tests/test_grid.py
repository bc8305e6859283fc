"""Grids of optimize runs on the local executor: one ledger equal to what the servers answered, caps
shared by projection, --resume skipping finished cells, failed cells in the table and the exit code,
and `--executor ray` refused in one line without Ray. (The Ray executor: tests/distributed.)"""

import json
import re
import sys

import pytest
from fakeserver import FakeServer, cell_config, scripted, target_args, target_or_optimizer

from lm_eval_abo import cli
from lm_eval_abo.artifact import store
from lm_eval_abo.cost.ledger import Caps, Ledger
from lm_eval_abo.infra.errors import AboError
from lm_eval_abo.run.grid import run_grid
from lm_eval_abo.run.grid.shares import shares, within

TASK = "abo_object_counting_synth"


def quiet(line):
    pass


def test_the_grid_ledger_is_the_sum_of_the_cells_and_what_the_servers_answered(tmp_path):
    with FakeServer(target_or_optimizer) as server:
        grid = run_grid([cell_config(server, tmp_path, seed) for seed in (1, 2, 3)], tmp_path, out=quiet)
        optimizer_calls, target_requests = server.count("/chat/completions"), server.count("/v1/completions")
    assert [r.status for r in grid.reports] == ["done"] * 3 and not grid.failed
    cells = [store.load(tmp_path / f"seed-{s}" / TASK / "ape" / "best.yaml").usage for s in (1, 2, 3)]
    assert grid.ledger.optimizer.calls == sum(c["optimizer"]["calls"] for c in cells) == optimizer_calls
    assert grid.ledger.target.calls == sum(c["target"]["calls"] for c in cells) == target_requests
    tokens = sum(c["target"]["prompt_tokens"] + c["target"]["completion_tokens"] for c in cells)
    assert grid.ledger.target.tokens == tokens
    written = json.loads((tmp_path / "grid.json").read_text())
    assert Ledger.from_dict(written["ledger"]) == grid.ledger and written["failed"] == 0
    assert [c["name"] for c in written["cells"]] == [f"seed-{s}/{TASK}/ape" for s in (1, 2, 3)]
    table = (tmp_path / "grid.md").read_text()
    assert table.count("| done |") == 3 and f"| grid | 3 of 3 done |  |  |  | {optimizer_calls} |" in table


def test_resume_skips_finished_cells_and_a_grid_without_it_refuses_an_earlier_run(tmp_path):
    with FakeServer(target_or_optimizer) as server:
        configs = [cell_config(server, tmp_path, seed) for seed in (1, 2)]
        first = run_grid(configs, tmp_path, out=quiet)
        before = len(server.requests)
        with pytest.raises(AboError, match=r"holds an earlier run; pass --resume to continue the grid"):
            run_grid(configs, tmp_path, out=quiet)
        again = run_grid(configs, tmp_path, resume=True, out=quiet)
        assert len(server.requests) == before, "no finished cell asks anything again"
    assert [r.status for r in again.reports] == ["done earlier"] * 2
    assert again.ledger == first.ledger
    usages = [store.load(tmp_path / f"seed-{s}" / TASK / "ape" / "best.yaml").usage for s in (1, 2)]
    recorded = [round(u["seconds"] + u["test_seconds"], 1) for u in usages]
    assert [r.seconds for r in again.reports] == recorded and all(s > 0 for s in recorded), \
        "a cell done earlier reports the seconds its run recorded, not 0"


def test_the_grid_caps_are_shared_by_projection_and_hold_for_the_grid(tmp_path):
    with FakeServer(target_or_optimizer) as server:
        configs = [cell_config(server, tmp_path, 1, method="opro"), cell_config(server, tmp_path, 2, method="ape")]
        lines = []
        grid = run_grid(configs, tmp_path, caps=Caps(max_optimizer_calls=4), out=lines.append)
        asked = server.count("/chat/completions")
    projection = next(line for line in lines if line.startswith("grid: 2 cells to run"))
    # rounds 1, beam 1: opro is projected to make 5 calls and ape 2; their shares of 4 are 4*5/7 and 4*2/7, rounded down
    assert re.search(r"^\| seed-1/\S+/opro \| 5 \| .* \| 2 \|$", projection, re.M), projection
    assert re.search(r"^\| seed-2/\S+/ape \| 2 \| .* \| 1 \|$", projection, re.M), projection
    assert "caps over the whole grid: --max-optimizer-calls 4" in projection
    calls = {r.name.split("/")[-1]: Ledger.from_dict(r.ledger).optimizer.calls for r in grid.reports}
    assert calls == {"opro": 2, "ape": 1} and grid.ledger.optimizer.calls == asked == 3
    assert all(r.status == "done" for r in grid.reports)


def test_shares_follow_the_projection_and_never_add_up_to_more_than_the_cap():
    projected = [Ledger.from_dict({"optimizer": {"calls": 3, "cost_usd": 0.3}}),
                 Ledger.from_dict({"optimizer": {"calls": 1, "cost_usd": 0.1}})]
    first, second = shares(Caps(max_cost=2.0, max_optimizer_calls=10), projected, Ledger())
    assert (first.max_cost, second.max_cost) == (pytest.approx(1.5), pytest.approx(0.5))
    assert (first.max_optimizer_calls, second.max_optimizer_calls) == (7, 2)  # 7.5 and 2.5, rounded down
    assert first.max_target_tokens is None
    spent = Ledger.from_dict({"optimizer": {"calls": 6, "cost_usd": 1.0}})  # what finished cells spent
    first, second = shares(Caps(max_cost=2.0, max_optimizer_calls=10), projected, spent)
    assert (first.max_cost, first.max_optimizer_calls, second.max_optimizer_calls) == (pytest.approx(0.75), 3, 1)
    assert within(Caps(max_optimizer_calls=20), Caps(max_optimizer_calls=7, max_cost=0.5)) == Caps(0.5, None, 7)


def test_a_failed_cell_is_one_line_in_the_table_the_others_finish_and_the_exit_code_says_so(tmp_path, capsys):
    (tmp_path / "table" / TASK).mkdir(parents=True)
    (tmp_path / "table" / TASK / "opro").write_text("a file where the opro run's folder goes")
    with FakeServer(default=scripted) as server:
        code = cli.main(["paper-table", "--tasks", TASK, "--apo-methods", "ape,opro", "--rounds", "1", "--beam", "1",
                         "--train-limit", "4", "--dev-limit", "3", "--test-limit", "3", "--minibatch", "2",
                         "--model", "local-completions", "--model_args", target_args(server),
                         "--optimizer", "openai/fake",
                         "--optimizer_args", f"api_base={server.base_url},api_key=x", "--no-optimizer-cache",
                         "--output", str(tmp_path / "table")])
    assert code == 3
    table = json.loads((tmp_path / "table" / "paper_table.json").read_text())
    [failed] = table["failed"]
    assert failed["name"] == f"{TASK}/opro" and "\n" not in failed["error"] and "cannot write" in failed["error"]
    grid = json.loads((tmp_path / "table" / "grid.json").read_text())
    assert {c["name"]: c["status"] for c in grid["cells"]} == {
        f"{TASK}/ape": "done", f"{TASK}/opro": "failed", f"{TASK}/abo": "done", f"hint-never/{TASK}/abo": "done",
        f"{TASK}/abo-ablation": "done"}
    rows = {r["row"]: r for r in table["rows"]}
    assert rows["best APO method"]["detail"].startswith("ape (dev") and "ABO step 1" in rows
    assert "1 of 5 runs failed" in capsys.readouterr().out


def test_executor_ray_without_ray_is_one_line_naming_the_extra(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)  # as where the extra is not installed: `import ray` fails
    with FakeServer(target_or_optimizer) as server:
        code = cli.main(["paper-table", "--tasks", TASK, "--apo-methods", "ape", "--model", "local-completions",
                         "--model_args", target_args(server), "--executor", "ray", "--output", str(tmp_path / "t")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err == ('lm-eval-abo: error: --executor ray needs Ray, which is not installed: '
                                 'pip install "lm-eval-abo[ray]"')
