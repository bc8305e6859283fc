"""One prompt for several targets: `optimize` with `--model` once per target scores every candidate on all of
them (`panel.Panel`), under `--objective mean|min` over their dev scores. Rule-based targets through the real
lm-eval scoring, a scripted optimizer; the expected values are counted by hand from the documents."""

import json
from dataclasses import replace

import pytest
from conftest import FakeLM, ScriptedLLM, gold, make_context, make_search, rule_lm
from fakeserver import FakeServer

from lm_eval_abo import cli
from lm_eval_abo.artifact.prompt import Prompt
from lm_eval_abo.config import OptimizeConfig
from lm_eval_abo.optimizers.gepa import Adapter, instances
from lm_eval_abo.run.optimize import optimize, plan_run
from lm_eval_abo.run.session import attach_targets, plan_session, resolve_run

TASK = "abo_object_counting_synth"
MAGIC = Prompt(instruction="Say the magic word, then count.")


def even_lm() -> FakeLM:
    """Right exactly on the documents whose gold count is even, whatever the prompt."""
    return FakeLM(lambda r: f" So the answer is {gold(r)}." if int(gold(r)) % 2 == 0 else " I do not know.")


def config_of(objective: str | None = "mean", labels=("a", "b"), **more) -> OptimizeConfig:
    targets = tuple((label, "local-completions", f"model={label},tokenizer_backend=None", (0.0, 0.0)) for label in labels)
    return OptimizeConfig(task=TASK, metadata={"abo_n_train": 8, "abo_n_dev": 4, "abo_n_test": 4}, objective=objective,
                          targets=targets, **more)


def panel_of(objective: str = "mean", a=None, b=None):
    """The task through target a (right when the prompt says "magic") and target b (right on even counts)."""
    config = resolve_run(config_of(objective))[0]
    session = plan_session(config)
    attach_targets(session, config, {"a": a or rule_lm(), "b": b or even_lm()})
    return session.bridge


def even_share(bridge, split: str, indices) -> float:
    docs = bridge.docs(split)
    return sum(int(docs[i]["target"]) % 2 == 0 for i in indices) / len(indices)


@pytest.mark.parametrize("objective", ["mean", "min"])
def test_a_score_is_the_objective_over_the_targets_and_its_samples_are_labelled(objective):
    panel = panel_of(objective)
    dev = [0, 1, 2, 3]
    share = even_share(panel, "dev", dev)
    assert 0 < share < 1, "the split has even and odd counts: the two objectives differ"
    baseline, magic = panel.score([panel.default_prompt, MAGIC], "dev", dev)
    # a: 0 at the baseline, 1 with the magic word; b: the share of even counts at both
    expected = {"mean": ((0 + share) / 2, (1 + share) / 2), "min": (min(0, share), min(1, share))}[objective]
    assert (baseline.value, magic.value) == pytest.approx(expected)
    assert {m: s.value for m, s in magic.per_model.items()} == {"a": 1.0, "b": pytest.approx(share)}
    assert magic.n == 4 and len(magic.samples) == 8
    assert sorted(s.key for s in magic.samples) == sorted(f"{m}:{i}" for m in "ab" for i in dev)
    assert [s.model for s in magic.samples] == ["a"] * 4 + ["b"] * 4


def test_every_target_s_train_errors_reach_the_meta_prompt_labelled_with_its_model():
    panel = panel_of()
    llm = ScriptedLLM(lambda messages: "<reason>It guesses.</reason><prompt>Count the items.</prompt>")
    ctx = make_context(panel, llm, "apo", dev_indices=[0, 1, 2, 3], errors_per_gradient=16, gradients=1, paraphrases=0)
    make_search("apo", ctx, beam=1, minibatch=8, rounds=1).run(None, lambda s, r: None, lambda r: None)
    [sent] = llm.prompts_sent("Give 1 reason why")  # the gradient, shown every error (the edit a sample of them)
    odd = round(8 * (1 - even_share(panel, "train", range(8))))
    # the baseline has no magic word: a misses all 8 train examples, b the odd counts
    assert sent.count("Target model: a\n") == 8 and sent.count("Target model: b\n") == odd


def test_gepa_s_instances_and_pareto_keys_are_model_and_example():
    assert instances("dev", [0, 1]) == [("dev", 0), ("dev", 1)], "one target: as before"
    assert instances("dev", [0, 1], ("a", "b")) == [("dev", 0, "a"), ("dev", 1, "a"), ("dev", 0, "b"), ("dev", 1, "b")]
    panel = panel_of()
    adapter = Adapter(panel, panel.default_prompt)
    batch = instances("dev", [0, 1, 2, 3], panel.models)
    scored = adapter.evaluate(batch, {"instruction": MAGIC.instruction}, capture_traces=True)
    docs = panel.docs("dev")
    assert scored.scores == [1.0] * 4 + [float(int(docs[i]["target"]) % 2 == 0) for i in range(4)]
    train = adapter.evaluate(instances("train", [0, 1], panel.models), {"instruction": "Count."}, capture_traces=True)
    records = adapter.make_reflective_dataset({}, train, ["instruction"])["instruction"]
    assert [r["Target Model"] for r in records] == ["a", "a", "b", "b"]


def test_the_search_pairs_dev_results_on_model_and_example():
    panel = panel_of()
    llm = ScriptedLLM(lambda messages: "<prompt>Say the magic word, then count.</prompt>")
    ctx = make_context(panel, llm, "ape", dev_indices=[0, 1, 2, 3], paraphrases=1)
    state = make_search("ape", ctx, beam=1, rounds=0).run(None, lambda s, r: None, lambda r: None)
    best = state.best
    assert best.prompt.instruction == MAGIC.instruction and best.dev == pytest.approx((1 + even_share(panel, "dev", range(4))) / 2)
    assert sorted(best.dev_per_example) == sorted(f"{m}:{i}" for m in "ab" for i in range(4))
    assert state.trace[0].flips["fixed"] == ["a:0", "a:1", "a:2", "a:3"], "a fixed all four, b changed nothing"


def test_the_artifact_holds_each_target_s_scores_and_the_projection_counts_every_target(tmp_path):
    with FakeServer() as server:
        config = config_of("min", method="ape", method_args={"paraphrases": 1}, optimizer="openai/fake",
                           optimizer_args={"api_base": server.base_url, "api_key": "x"}, optimizer_cache=None,
                           rounds=1, beam=1, train_limit=4, dev_limit=4, test_limit=4, minibatch=2,
                           output=str(tmp_path / "runs"))
        a, b = rule_lm(), even_lm()
        lines = []
        outcome = optimize(config, out=lines.append, lm={"a": a, "b": b})
    artifact = outcome.artifact_data
    scores, per = artifact.scores, artifact.scores["per_model"]
    assert artifact.target["objective"] == "min" and [t["label"] for t in artifact.target["targets"]] == ["a", "b"]
    assert artifact.settings["objective"] == "min"
    for label in ("a", "b"):
        results = json.loads((outcome.run_dir / per[label]["test"]["results_file"]).read_text())
        assert per[label]["test"]["value"] == results["results"][TASK]["exact_match,answer"]
        assert per[label]["test_comparison"]["n"] == 4
    assert scores["test"]["value"] == min(per["a"]["test"]["value"], per["b"]["test"]["value"])
    assert scores["baseline_test"]["value"] == min(per["a"]["baseline_test"]["value"], per["b"]["baseline_test"]["value"])
    assert scores["dev"]["value"] == min(per["a"]["dev"]["value"], per["b"]["dev"]["value"])
    assert scores["test_comparison"]["n"] == 8, "pooled over (model, document)"
    shown = "\n".join(lines)
    assert "target the min of 2 (a: local-completions model=a," in shown
    assert f"  b: dev {per['b']['dev']['value']:.3f} (baseline {per['b']['baseline_dev']['value']:.3f}), test" in shown
    # the ledger counts both targets; the projection too: twice one target's
    assert artifact.usage["target"]["calls"] == len(a.seen) + len(b.seen)
    one = resolve_run(replace(config, objective=None, targets=(), model="local-completions",
                              model_args="model=a,tokenizer_backend=None"))
    both = resolve_run(config)
    single, joint = plan_run(*one)[1].total, plan_run(*both)[1].total
    assert joint.target.calls == 2 * single.target.calls and joint.optimizer.calls == single.optimizer.calls


def test_one_target_keeps_its_fingerprint_and_settings():
    one = resolve_run(OptimizeConfig(task=TASK))[0]
    assert "objective" not in one.fingerprint() and "targets" not in one.fingerprint() and one.targets == ()
    several = resolve_run(config_of(None))[0]
    assert several.objective == "mean" and several.fingerprint()["targets"][1][:2] == ["b", "local-completions"]
    assert (several.model, several.model_args) == ("local-completions", "model=a,tokenizer_backend=None")


@pytest.mark.parametrize(("args", "error"), [
    (["--objective", "min"], "lm-eval-abo: error: --objective min: it combines the dev scores of several targets; "
     "give two or more (--model BACKEND --model_args ARGS, once per target)"),
    (["--model", "abo-test-rule", "--model_args", "keyword=a", "--label", "x", "--model", "abo-test-rule",
      "--model_args", "keyword=b", "--label", "x"], "lm-eval-abo: error: --label x names two targets"),
    (["--model", "abo-test-rule", "--model_args", "keyword=a", "--model", "abo-test-rule", "--model_args", "keyword=a"],
     "lm-eval-abo: error: --model abo-test-rule --model_args keyword=a is given twice"),
    (["--model", "abo-test-rule", "--model_args", "keyword=a", "--model_args", "keyword=b"],
     "lm-eval-abo optimize: error: --model_args is given twice for --model abo-test-rule"),
])
def test_bad_targets_are_one_line(tmp_path, capsys, args, error):
    code = cli.main(["optimize", "--task", TASK, *args, "--output", str(tmp_path / "runs")])
    assert code == 2 and capsys.readouterr().err.strip() == error
    assert not (tmp_path / "runs").exists()


def test_one_target_s_flags_in_any_order_name_one_target(tmp_path, capsys):
    from lm_eval_abo.commands.targets import run_targets

    parser = cli.build_parser()
    for argv in (["--model_args", "model=x", "--model", "hf"], ["--model", "hf", "--model_args", "model=x"]):
        args = parser.parse_args(["optimize", "--task", TASK, *argv])
        assert run_targets(args, {"model": "abo-embedded", "model_args": "model=gemma-3-270m"}) == \
            {"model": "hf", "model_args": "model=x", "target_price": None}
    args = parser.parse_args(["optimize", "--task", TASK])
    assert run_targets(args, {"model": "abo-embedded", "model_args": "model=gemma-3-270m"}) == \
        {"model": "abo-embedded", "model_args": "model=gemma-3-270m", "target_price": None}
