"""`compare` and `transfer`: the matrix and ranking statistics against hand-made results (a rank change that
holds, one within noise that does not count, Kendall's tau against hand-computed values); the HTML page in
headless Chromium; `compare` end to end on two rule-based targets with a fake optimizer server on 127.0.0.1
(executor local), its --resume, `transfer` of one of its prompts, and the command-line errors, each one line;
then (slow) a real run with two embedded targets."""

import csv
import io
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import FakeLM, bin_path, rule_answer, run_cli
from fakeserver import FakeServer
from lm_eval.api.registry import register_model

from lm_eval_abo import cli
from lm_eval_abo.artifact import store
from lm_eval_abo.cost.ledger import Caps, Ledger, Usage
from lm_eval_abo.infra import stats
from lm_eval_abo.infra.errors import AboError
from lm_eval_abo.infra.files import read_json
from lm_eval_abo.reports import compare as reports
from lm_eval_abo.reports.compare.matrix import Evaluated, Setting, build, ranks
from lm_eval_abo.run.compare import less
from lm_eval_abo.run.transfer import entrants

TASK = "abo_object_counting_synth"
N = 40  # documents of the hand-made results


@register_model("abo-test-rule")
class RuleTarget(FakeLM):
    """`rule_lm` as an lm-eval backend, so the command line loads it by name: right on every document exactly
    when the prompt holds `keyword`. Every load is recorded."""

    loads: list[str] = []

    def __init__(self, keyword="magic", say="", broken=False, **kwargs):
        if broken:
            raise ValueError("this target does not load")
        super().__init__(rule_answer(keyword, say))
        RuleTarget.loads.append(keyword)


# --- the statistics against hand-made results ---------------------------------------------------


def test_kendall_tau_against_hand_computed_values():
    # one discordant pair of six: (6 - 2*1) / 6
    assert stats.kendall_tau([1, 2, 3, 4], [1, 3, 2, 4]) == pytest.approx(4 / 6)
    # a tie in x: pairs untied in x 2, in y 3, both concordant: 2 / sqrt(2 * 3)
    assert stats.kendall_tau([0.5, 0.5, 0.7], [0.2, 0.4, 0.6]) == pytest.approx(2 / 6**0.5)
    assert stats.kendall_tau([1, 2, 3], [3, 2, 1]) == -1.0
    assert stats.kendall_tau([1, 1], [0, 1]) is None  # every pair tied in x: no order to compare


def test_ranks_share_a_place_on_ties_and_follow_the_metric_direction():
    assert ranks({"a": 0.5, "b": 0.5, "c": 0.2}) == {"a": 1, "b": 1, "c": 3}
    assert ranks({"a": 0.5, "b": 0.5, "c": 0.2}, higher_is_better=False) == {"a": 2, "b": 2, "c": 1}


def right(*ranges) -> dict[int, float]:
    """Per-document 0/1 values over N documents: 1 on the documents of `ranges`."""
    hits = {i for r in ranges for i in r}
    return {i: float(i in hits) for i in range(N)}


def cell(prompt, model, per_doc) -> Evaluated:
    correct = {i: v >= 1 for i, v in per_doc.items()}
    return Evaluated(prompt, model, sum(per_doc.values()) / N, None, N, per_doc, correct)


def hand_made():
    """Three models on 40 documents. At the baseline A is right on 0-29, C on 0-28, B on 0-9; at their own best
    prompts A stays on 0-29, C is right on 0-30 and B on 0-37. So A - B goes from +20/40 to -8/40 and B - C from
    -19/40 to +7/40 (changes that hold), while A - C goes from +1/40 (document 29) to -1/40 (document 30): one
    document each way, within noise."""
    cells = [cell("baseline", "A", right(range(30))), cell("baseline", "B", right(range(10))),
             cell("baseline", "C", right(range(29))),
             cell("best for A", "A", right(range(30))), cell("best for B", "B", right(range(38))),
             cell("best for C", "C", right(range(31))),
             cell("best for B", "A", right(range(20)))]  # B's prompt breaks 10 of A's documents
    models = ["A", "B", "C"]
    settings = [Setting("baseline", {m: "baseline" for m in models}),
                Setting("own best", {m: f"best for {m}" for m in models})]
    return build(cells, ["baseline", "best for A", "best for B", "best for C"], models, settings, seed=7)


def test_the_matrix_holds_each_cell_against_its_models_baseline():
    matrix = hand_made()
    assert matrix.cell("baseline", "A")["score"] == 0.75 and "difference" not in matrix.cell("baseline", "A")
    b = matrix.cell("best for B", "B")  # 28 documents fixed, none broken
    assert b["baseline"] == 0.25 and b["difference"] == pytest.approx(0.7) and b["beyond"] == 1
    assert b["mcnemar_p"] == pytest.approx(stats.mcnemar_exact(0, 28))
    c = matrix.cell("best for C", "C")  # 2 of 40 fixed: an interval from 0 (0.95**40 = 13% of resamples miss both)
    assert c["difference"] == pytest.approx(0.05) and c["ci"][0] == 0.0 and c["beyond"] == 0
    transferred = matrix.cell("best for B", "A")  # documents 20-29 broken
    assert transferred["difference"] == pytest.approx(-0.25) and transferred["beyond"] == -1
    assert matrix.cell("best for A", "B") is None  # not evaluated: left out


def test_rankings_tau_and_only_the_rank_changes_beyond_their_intervals_count():
    matrix = hand_made().to_dict()
    order = {r["setting"]: [(o["model"], o["rank"], o["score"]) for o in r["order"]] for r in matrix["rankings"]}
    assert order["baseline"] == [("A", 1, 0.75), ("C", 2, 0.725), ("B", 3, 0.25)]
    assert order["own best"] == [("B", 1, 0.95), ("C", 2, 0.775), ("A", 3, 0.75)]
    # every pair of the three models changes order: tau = (0 - 3) / 3
    assert matrix["tau"] == [{"a": "baseline", "b": "own best", "models": 3, "tau": -1.0}]
    changes = [(c["a"], c["b"], round(c["before"], 3), round(c["after"], 3), c["holds"]) for c in matrix["changes"]]
    assert changes == [("A", "B", 0.5, -0.2, True), ("B", "C", -0.475, 0.175, True), ("A", "C", 0.025, -0.025, False)]
    noise = matrix["changes"][2]
    assert noise["before_ci"][0] == 0.0 and noise["after_ci"][1] == 0.0  # one document each way: 0 inside both


def hand_made_result() -> dict:
    return {"title": "Models compared at their own prompts", "about": "Hand-made results.", "failed": [],
            "targets": [{"label": m, "model": "hf", "model_args": f"pretrained={m}"} for m in "ABC"],
            "tasks": [{"task": TASK, "metric": "exact_match,answer", "n_test": N, "failed": [],
                       "prompts": [{"row": r, "source": "made by hand", "detail": ""}
                                   for r in ("baseline", "best for A", "best for B", "best for C")],
                       "matrix": hand_made().to_dict()}]}


def test_markdown_and_csv_of_the_hand_made_results(tmp_path):
    files = reports.write(hand_made_result(), tmp_path, "compare")
    assert [f.name for f in files] == ["compare.json", "compare.md", "compare.csv", "compare_rankings.csv",
                                       "compare.html"]
    text = (tmp_path / "compare.md").read_text()
    assert "| best for B | 0.500 (-0.250*, " in text and "| 0.950 (+0.700*, " in text
    assert "Kendall's tau-b between the rankings: baseline vs own best: -1.000 (3 models)." in text
    assert "2 of 3 changes of order hold" in text
    assert "| A vs C | baseline -> own best | +0.025 (+0.000 to " in text and "| within noise: not counted |" in text
    rows = list(csv.DictReader(io.StringIO((tmp_path / "compare.csv").read_text())))
    assert len(rows) == 7 and {r["prompt"] for r in rows} == {"baseline", "best for A", "best for B", "best for C"}
    b = next(r for r in rows if r["prompt"] == "best for B" and r["model"] == "B")
    assert float(b["score"]) == 0.95 and float(b["difference"]) == pytest.approx(0.7) and b["beyond"] == "1"
    ranked = list(csv.DictReader(io.StringIO((tmp_path / "compare_rankings.csv").read_text())))
    assert [(r["setting"], r["model"], r["rank"]) for r in ranked][:3] == [
        ("baseline", "A", "1"), ("baseline", "C", "2"), ("baseline", "B", "3")]


def test_the_html_page_renders_its_heatmap_and_bump_chart_in_headless_chromium(tmp_path):
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.skip("Chromium is not installed (Debian: apt-get install -y chromium)")
    pytest.importorskip("matplotlib", reason="the page's plots need matplotlib (the plots extra)")
    from PIL import Image

    reports.write(hand_made_result(), tmp_path, "compare")
    page = (tmp_path / "compare.html").as_uri()
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--window-size=1200,2600"]
    dom = subprocess.run([browser, *flags, "--dump-dom", page], capture_output=True, text=True, timeout=120).stdout
    assert "<h2>abo_object_counting_synth</h2>" in dom and "within noise: not counted" in dom
    assert 'alt="heatmap of the transfer matrix of abo_object_counting_synth"' in dom and 'alt="bump chart' in dom
    shot = tmp_path / "page.png"
    subprocess.run([browser, *flags, f"--screenshot={shot}", page], capture_output=True, timeout=120, check=True)
    image = Image.open(shot).convert("RGB")
    pixels = [image.getpixel((x, y)) for y in range(0, image.height, 2) for x in range(0, image.width, 2)]
    # the heatmap's darkest blue (RdBu at +0.7, B's gain, the largest) and the bump chart's second line (orange)
    # are drawn only if the browser decoded both images
    dark_blue = sum(r < 30 and g < 80 and 80 < b < 130 for r, g, b in pixels)
    orange = sum(r > 230 and 100 < g < 150 and b < 50 for r, g, b in pixels)
    assert dark_blue > 500 and orange > 40, (dark_blue, orange)  # every other pixel of every other row


def test_the_caps_the_grid_shares_are_what_the_evaluations_leave():
    evaluations = Ledger(target=Usage(calls=40, prompt_tokens=400, completion_tokens=100, cost_usd=0.25))
    assert less(Caps(max_cost=1.0, max_target_tokens=1000, max_optimizer_calls=9), evaluations) == Caps(0.75, 500, 9)
    assert less(Caps(), evaluations) == Caps()
    with pytest.raises(AboError, match=r"the caps do not cover the evaluations .* \$0.2500, 500 target tokens"):
        less(Caps(max_target_tokens=499), evaluations)


def test_targets_get_their_labels_and_are_checked():
    found = entrants([{"model": "hf", "model_args": "pretrained=Qwen/Qwen2.5-7B-Instruct"},
                      {"model": "hf", "model_args": "pretrained=/models/llama/,dtype=float16"},
                      {"model": "abo-embedded", "model_args": "model=gemma-3-270m"},
                      {"model": "abo-embedded", "model_args": "model=gemma-3-270m,seed=2"},
                      {"model": "local-completions", "model_args": "base_url=http://127.0.0.1:8000/v1"},
                      {"model": "vllm", "model_args": "pretrained=m", "label": "mine"}])
    assert [e.label for e in found] == ["Qwen2.5-7B-Instruct", "llama", "gemma-3-270m", "gemma-3-270m-2",
                                        "local-completions", "mine"]
    with pytest.raises(AboError, match="is given twice"):
        entrants([{"model": "hf", "model_args": "pretrained=a"}, {"model": "hf", "model_args": "pretrained=a"}])
    with pytest.raises(AboError, match="--label x names two targets"):
        entrants([{"model": "hf", "label": "x"}, {"model": "vllm", "label": "x"}])


# --- end to end on two rule-based targets --------------------------------------------------------


SECRET = "sk-abo-test-0123456789"


def compare_args(server, output, *more) -> list[str]:
    """Two targets: `steady` is right whenever the prompt says "enumerating" (the task's own instruction does),
    `counter` whenever it says "Count" (every instruction the fake optimizer writes does, and the baseline does
    not); counter's model_args hold an API key."""
    return ["compare", "--tasks", TASK, "--method", "ape", "--method-args", "paraphrases=1",
            "--model", "abo-test-rule", "--model_args", "keyword=enumerating,say=Hmm.", "--label", "steady",
            "--target-price", "0,0",
            "--model", "abo-test-rule", "--model_args", f"keyword=Count,api_key={SECRET}", "--label", "counter",
            "--target-price", "0,0",
            "--optimizer", "openai/fake", "--optimizer_args", f"api_base={server.base_url},api_key=x",
            "--no-optimizer-cache", "--rounds", "1", "--beam", "1", "--train-limit", "4", "--dev-limit", "3",
            "--test-limit", "4", "--minibatch", "2", "--output", str(output), *more]


def test_compare_end_to_end_on_two_rule_based_targets(tmp_path, capsys):
    out = tmp_path / "cmp"
    RuleTarget.loads.clear()
    with FakeServer() as server:
        assert cli.main(compare_args(server, out)) == 0
        asked = len(server.requests)
        # the grid ran steady, counter, then the shared prompt's run on both (steady from the grid's loader, counter
        # loaded by the run); the evaluations start on the loaded one (steady)
        assert RuleTarget.loads == ["enumerating", "Count", "enumerating", "Count", "Count"]
        result = json.loads((out / "compare.json").read_text())
        [part] = result["tasks"]
        cells = {(c["prompt"], c["model"]): c for c in part["matrix"]["cells"]}
        # steady's search found nothing better than the baseline; counter's best says "Count"
        assert {k: (c["score"], c.get("difference")) for k, c in cells.items()} == {
            ("baseline", "steady"): (1.0, None), ("baseline", "counter"): (0.0, None),
            ("best for steady", "steady"): (1.0, 0.0), ("best for steady", "counter"): (0.0, 0.0),
            ("best for counter", "steady"): (0.0, -1.0), ("best for counter", "counter"): (1.0, 1.0),
            ("shared prompt", "steady"): (1.0, 0.0), ("shared prompt", "counter"): (0.0, 0.0)}
        assert cells[("best for counter", "steady")]["ci"] == [-1.0, -1.0] and part["n_test"] == 4
        assert "the baseline's prompt" in part["prompts"][1]["detail"]
        assert part["prompts"][3]["detail"].endswith("(the same prompt as best for steady)")
        # the shared prompt's run on both targets: the baseline's mean dev score is (1 + 0) / 2, and the fake
        # optimizer's instruction (it says "Count", not "enumerating") scores (0 + 1) / 2: a tie keeps the baseline
        assert part["dev"] == {"baseline": {"steady": 1.0, "counter": 0.0},
                               "shared prompt": {"steady": 1.0, "counter": 0.0}}
        assert (part["shared"]["row"], part["shared"]["value"]) == ("shared prompt", 0.5)
        shared = json.loads((out / "shared" / TASK / "ape" / "state.json").read_text())["state"]["nodes"]
        assert [(n["origin"], n["dev"]) for n in shared] == [("baseline", 0.5), ("initial", 0.5), ("paraphrase", 0.5)]
        assert sorted(shared[0]["dev_per_example"]) == ["counter:0", "counter:1", "counter:2", "steady:0", "steady:1",
                                                        "steady:2"]
        ranked = {r["setting"]: [(o["model"], o["rank"]) for o in r["order"]] for r in part["matrix"]["rankings"]}
        assert ranked == {"baseline": [("steady", 1), ("counter", 2)], "own best": [("steady", 1), ("counter", 1)],
                          "shared": [("steady", 1), ("counter", 2)]}
        assert [t["tau"] for t in part["matrix"]["tau"]] == [None, 1.0, None] and part["matrix"]["changes"] == []
        # every pair's lm-eval results and samples kept, recording the prompt it evaluated
        for c in cells.values():
            results = json.loads(Path(c["results"]).read_text())
            assert results["results"][TASK]["exact_match,answer"] == c["score"]
            assert list(Path(c["results"]).parent.glob(f"samples_{TASK}_*.jsonl"))
        artifact = out / "runs" / "counter" / TASK / "ape" / "best.yaml"
        recorded = json.loads(Path(cells[("best for counter", "steady")]["results"]).read_text())
        assert recorded["configs"][TASK]["metadata"]["abo"]["source"] == str(artifact)
        # test: 8 pairs x 4 documents; the runs had evaluated the baseline on both targets and counter's best on
        # counter (the shared prompt is the baseline), so only counter's best on steady reached a target
        evaluations = result["ledger"]["evaluations"]["target"]
        assert (evaluations["calls"], evaluations["cache_hits"]) == (32, 28)
        grid = json.loads((out / "grid.json").read_text())
        assert [c["status"] for c in grid["cells"]] == ["done", "done", "done"]
        assert result["ledger"]["optimize runs"] == grid["ledger"]
        assert (out / "compare.html").read_text().count("data:image/png;base64,") == 2
        assert "| best for counter | 0.000 (-1.000*, -1.000 to -1.000) | 1.000 (+1.000*, +1.000 to +1.000) |" in \
            (out / "compare.md").read_text()

        code = cli.main(compare_args(server, out))
        assert code == 2 and "holds an earlier run; pass --resume" in capsys.readouterr().err
        assert cli.main(compare_args(server, out, "--resume")) == 0
        assert len(server.requests) == asked, "the finished runs are reused: no optimizer call again"
    again = json.loads((out / "compare.json").read_text())
    def without_files(cells):
        return [{k: v for k, v in c.items() if k != "results"} for c in cells]

    assert without_files(again["tasks"][0]["matrix"]["cells"]) == without_files(part["matrix"]["cells"])
    assert [c["status"] for c in json.loads((out / "grid.json").read_text())["cells"]] == ["done earlier"] * 3
    written = [p for p in out.rglob("*") if p.is_file()]
    assert not [p for p in written if SECRET.encode() in p.read_bytes()], "the API key is in no file"
    assert "`counter` (abo-test-rule keyword=Count,api_key=***)" in (out / "compare.md").read_text()

    # the counter's prompt moved to other targets: one row against each target's baseline
    assert cli.main(["transfer", str(artifact), "--model", "abo-test-rule", "--model_args", "keyword=enumerating",
                     "--model", "abo-test-rule", "--model_args", "keyword=Count,say=Well.", "--label", "talker",
                     "-o", str(tmp_path / "moved")]) == 0
    moved = json.loads((tmp_path / "moved" / "transfer.json").read_text())["tasks"][0]
    assert moved["matrix"]["rows"] == ["baseline", "ape prompt"] and moved["n_test"] == 4
    assert {(c["prompt"], c["model"]): (c["score"], c.get("difference")) for c in moved["matrix"]["cells"]} == {
        ("baseline", "abo-test-rule"): (1.0, None), ("baseline", "talker"): (0.0, None),
        ("ape prompt", "abo-test-rule"): (0.0, -1.0), ("ape prompt", "talker"): (1.0, 1.0)}

    # the shared prompt, made for both targets at once, moved the same way; it is the baseline's prompt (above)
    shared = out / "shared" / TASK / "ape" / "best.yaml"
    assert cli.main(["transfer", str(shared), "--model", "abo-test-rule", "--model_args", "keyword=enumerating",
                     "--model", "abo-test-rule", "--model_args", "keyword=Count,say=Well.", "--label", "talker",
                     "-o", str(tmp_path / "moved-shared")]) == 0
    moved = json.loads((tmp_path / "moved-shared" / "transfer.json").read_text())
    assert "(optimized for steady, counter (mean of their scores))" in moved["about"]
    assert moved["tasks"][0]["prompts"][1]["detail"] == "dev 0.500 (baseline dev 0.500) on steady, counter (mean of " \
                                                         "their scores)"
    assert {(c["prompt"], c["model"]): (c["score"], c.get("difference")) for c in moved["tasks"][0]["matrix"]["cells"]} \
        == {("baseline", "abo-test-rule"): (1.0, None), ("baseline", "talker"): (0.0, None),
            ("ape prompt", "abo-test-rule"): (1.0, 0.0), ("ape prompt", "talker"): (0.0, 0.0)}


def test_a_target_that_does_not_load_fails_its_run_and_cells_alone_and_the_exit_code_says_so(tmp_path, capsys):
    with FakeServer() as server:
        args = compare_args(server, tmp_path / "cmp", "--objective", "none")
        args[args.index(f"keyword=Count,api_key={SECRET}")] = "keyword=Count,broken=True"
        assert cli.main(args) == 3
    result = json.loads((tmp_path / "cmp" / "compare.json").read_text())
    why = "--model abo-test-rule --model_args keyword=Count,broken=True: this target does not load"
    assert result["failed"] == [f"run runs/counter/{TASK}/ape: {why}", f"evaluations of {TASK} on counter: {why}"]
    [part] = result["tasks"]
    assert part["matrix"]["rows"] == ["baseline", "best for steady"] and part["failed"] == [f"counter: {why}"]
    assert part["shared"] is None and [r["setting"] for r in part["matrix"]["rankings"]] == ["baseline", "own best"]
    assert {(c["prompt"], c["model"]) for c in part["matrix"]["cells"]} == {("baseline", "steady"),
                                                                          ("best for steady", "steady")}
    assert f"Left out: counter: {why}" in (tmp_path / "cmp" / "compare.md").read_text()
    assert "2 failed (their rows and cells are left out)" in capsys.readouterr().out


@pytest.mark.parametrize(("args", "error"), [
    (["--model", "abo-test-rule"], "lm-eval-abo: error: give at least 2 targets: --model BACKEND [--model_args ARGS] "
     "[--label NAME], once per target (got 1)"),
    (["--model_args", "keyword=x", "--model", "abo-test-rule"],
     "lm-eval-abo compare: error: --model_args keyword=x: put it after the --model it belongs to"),
    (["--model", "abo-test-rule", "--model_args", "keyword=a", "--model_args", "keyword=b"],
     "lm-eval-abo compare: error: --model_args is given twice for --model abo-test-rule"),
    (["--model", "abo-test-rule", "--model", "no-such-backend"],
     "lm-eval-abo: error: unknown lm-eval model backend 'no-such-backend' (see lm-eval's model list)"),
    (["--model", "abo-test-rule", "--model_args", "keyword=a", "--model", "abo-test-rule", "--model_args", "keyword=b",
      "--label", "a/b"],
     "lm-eval-abo: error: --label 'a/b': a label is 1-64 letters, digits and _ . - (it names a folder)"),
    (["--model", "abo-test-rule", "--target-price", "free", "--model", "hf"],
     "lm-eval-abo: error: --target-price: expected IN,OUT in US dollars per million tokens (e.g. 0.5,1.5), got 'free'"),
    (["--model", "abo-test-rule", "--model_args", "keyword=a", "--target-price", "1,2", "--model", "abo-test-rule",
      "--model_args", "keyword=b", "--max-cost", "1"],
     "lm-eval-abo: error: --max-cost needs the target's price, and litellm's cost map has none for abo-test-rule: give "
     "--target-price IN,OUT (US dollars per million tokens)"),
    (["--tasks", "no_such_task", "--model", "abo-test-rule", "--model_args", "keyword=a", "--model", "abo-test-rule",
      "--model_args", "keyword=b"], "lm-eval-abo: error: unknown task 'no_such_task': not among lm-eval's tasks "
     "(`lm-eval ls tasks`), this plugin's (`lm-eval-abo tasks`) or under --include_path"),
])
def test_compare_errors_are_one_line(tmp_path, capsys, args, error):
    code = cli.main(["compare", "--tasks", TASK, *args, "--output", str(tmp_path / "c")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err == error
    assert not (tmp_path / "c").exists(), "nothing written"


def test_compare_with_executor_ray_without_ray_is_one_line_naming_the_extra(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)  # as where the extra is not installed: `import ray` fails
    with FakeServer() as server:
        assert cli.main(compare_args(server, tmp_path / "cmp", "--executor", "ray")) == 2
    assert capsys.readouterr().err.strip() == ('lm-eval-abo: error: --executor ray needs Ray, which is not installed: '
                                               'pip install "lm-eval-abo[ray]"')
    assert not (tmp_path / "cmp").exists(), "refused before anything is written"


def test_transfer_errors_are_one_line(tmp_path, capsys):
    assert cli.main(["transfer", str(tmp_path / "missing.yaml"), "--model", "abo-test-rule"]) == 2
    assert capsys.readouterr().err.count("\n") == 1
    assert cli.main(["transfer", str(tmp_path / "missing.yaml")]) == 2
    assert capsys.readouterr().err.strip() == ("lm-eval-abo: error: give at least 1 target: --model BACKEND "
                                               "[--model_args ARGS] [--label NAME], once per target (got 0)")


# --- the real embedded models ----------------------------------------------------------------------


@pytest.mark.slow
def test_compare_two_embedded_targets(tmp_path):
    """gemma-3-270m and qwen2.5-coder-0.5b as targets, the embedded optimizer, tiny splits: every pair evaluated
    by lm-eval on the same test documents; the shared prompt from one run optimizing a prompt for both at once
    (their worst dev score)."""
    run_cli(bin_path("lm-eval-abo"), "compare", "--tasks", TASK, "--method", "ape", "--method-args", "paraphrases=1",
            "--model", "abo-embedded", "--model_args", "model=gemma-3-270m",
            "--model", "abo-embedded", "--model_args", "model=qwen2.5-coder-0.5b",
            "--rounds", "1", "--beam", "1", "--train-limit", "3", "--dev-limit", "2", "--test-limit", "3",
            "--minibatch", "2", "--gen_kwargs", "max_gen_toks=48", "--output", "cmp", "--objective", "min",
            "--optimizer-cache", str(tmp_path / "optimizer-cache"), cwd=tmp_path)
    result = json.loads((tmp_path / "cmp" / "compare.json").read_text())
    [part] = result["tasks"]
    models = ["gemma-3-270m", "qwen2.5-coder-0.5b"]
    assert part["matrix"]["models"] == models and part["n_test"] == 3
    assert len(part["matrix"]["cells"]) == 8 and not result["failed"]
    for c in part["matrix"]["cells"]:
        results = json.loads((tmp_path / c["results"]).read_text())
        assert results["results"][TASK]["exact_match,answer"] == c["score"] and c["n"] == 3
    assert [r["setting"] for r in part["matrix"]["rankings"]] == ["baseline", "own best", "shared"]
    assert part["shared"]["row"] == "shared prompt" == part["matrix"]["rows"][-1]
    shared = store.load(tmp_path / "cmp" / "shared" / TASK / "ape" / "best.yaml", task=TASK)
    per_model = shared.scores["per_model"]
    assert [t["label"] for t in shared.target["targets"]] == models and shared.settings["objective"] == "min"
    assert shared.scores["dev"]["value"] == min(per_model[m]["dev"]["value"] for m in models) == part["shared"]["value"]
    assert shared.scores["test"]["value"] == min(per_model[m]["test"]["value"] for m in models)
    cells = {(c["prompt"], c["model"]): c for c in part["matrix"]["cells"]}
    for m in models:  # the run's own test evaluation of the prompt and the matrix's agree, document for document
        assert per_model[m]["test"]["value"] == cells[("shared prompt", m)]["score"]
        assert per_model[m]["test_comparison"]["n"] == 3
    nodes = read_json(tmp_path / "cmp" / "shared" / TASK / "ape" / "state.json")["state"]["nodes"]
    assert sorted(nodes[0]["dev_per_example"]) == [f"{m}:{i}" for m in models for i in (0, 1)]
    assert set(part["dev"]["baseline"]) == set(models)
    assert result["ledger"]["optimize runs"]["optimizer"]["calls"] > 0
