"""The methods as their sources publish them, and ABO as this project defines it: scripted optimizer
replies, a rule-based target, real lm-eval scoring."""

import json
import re
from dataclasses import asdict, replace

import pytest
from conftest import FakeLM, ScriptedLLM, bin_path, gold, make_bridge, make_context, make_search, projected_rounds, rule_lm, run_cli
from fakeserver import FakeServer

from lm_eval_abo.artifact import store
from lm_eval_abo.config import OptimizeConfig
from lm_eval_abo.infra import metaprompts
from lm_eval_abo.infra.files import read_json
from lm_eval_abo.infra.flags import parse_pairs
from lm_eval_abo.optimizers import METHODS
from lm_eval_abo.optimizers.base import Candidate, Node, Round
from lm_eval_abo.optimizers.instructions import score_subset
from lm_eval_abo.optimizers.result import SearchState
from lm_eval_abo.run.optimize import optimize
from lm_eval_abo.run.session import resolve_run


def context(reply, method: str, seed: int = 1, **params):
    bridge = make_bridge(rule_lm(), abo_n_train=8, abo_n_dev=4)
    llm = ScriptedLLM(reply)
    return make_context(bridge, llm, method, seed=seed, dev_indices=[0, 1, 2, 3], sampling_temperature=1.0, **params), llm


def picky_lm():
    """A stand-in target that is right when the prompt says "magic" and the gold answer is even, so a prompt's
    score differs from one set of examples to another."""
    return FakeLM(lambda r: f" So the answer is {gold(r) if 'magic' in r.args[0] and int(gold(r)) % 2 == 0 else -1}.")


def counting_reply(say: str = "Count plainly"):
    """Well-formed replies that are all different: per-error analyses and a summary when asked, else one
    tagged block that says `say`."""
    calls = []

    def reply(messages):
        calls.append(1)
        text = messages[0]["content"]
        if "<analysis>" in text:
            n = text.count("Correct answer:")
            return "".join(f"<analysis>Example {i} was miscounted.</analysis>" for i in range(1, n + 1)) + \
                f"<summary>Count each kind, then add; version {len(calls)}.</summary>"
        tag = next(t for t in ("reason", "summary", "prompt") if f"<{t}>" in text)
        asked = re.search(r"write (\d+) new instructions", text)
        return "".join(f"<{tag}>{say}, version {len(calls)}.{i}.</{tag}>" for i in range(int(asked.group(1)) if asked else 1))

    return reply


def node_of(ctx, instruction, origin="initial", parent=None) -> tuple[Node, list]:
    """A beam node with this instruction, scored on dev, and its samples on all of train."""
    prompt = replace(ctx.base_prompt, instruction=instruction)
    candidate = Candidate(prompt, origin, parent)
    [dev] = ctx.task.score([prompt], "dev", list(range(4)))
    [train] = ctx.task.score([prompt], "train", ctx.train_pool)
    return Node(candidate, 0, dev.value, dev.stderr, dev.n, {s.index: s.score for s in dev.samples}), train.samples


def round_of(beam: list[tuple[Node, list]], history: list[Node] | None = None) -> Round:
    """Round 1 with these beam nodes and their train samples."""
    nodes = [node for node, _ in beam]
    return Round(1, nodes, history or nodes, {node.key: samples for node, samples in beam})


SAMPLED = {"initial_instruction", "paraphrase", "apo_edit", "opro", "promptagent_edit", "promptagent_edit_right"}
REFLECTIONS = {"apo_gradient", "apo_sum_reflect", "promptagent_reflect", "promptagent_reflect_right"}


@pytest.mark.parametrize("method", ["ape", "apo", "apo-sum", "opro", "promptagent", "promptagent-beam"])
def test_sampling_calls_sample_and_reflections_and_scoring_do_not(method):
    target = picky_lm()
    bridge = make_bridge(target, abo_n_train=8, abo_n_dev=4)
    llm = ScriptedLLM(counting_reply())
    calls = []
    ctx = make_context(bridge, llm, method, dev_indices=[0, 1, 2, 3], sampling_temperature=1.0).recorded(calls.append)
    make_search(method, ctx, beam=1).run(None, lambda s, r: None, lambda r: None)
    temperatures = {c["template"]: c["temperature"] for c in calls}
    assert temperatures and set(temperatures) <= SAMPLED | REFLECTIONS
    assert all(t == (1.0 if name in SAMPLED else None) for name, t in temperatures.items()), temperatures
    assert target.kwargs and all(k.get("do_sample") is False and k.get("temperature") == 0.0 for k in target.kwargs)


def test_every_optimizer_call_is_stored_as_rendered_with_its_reply(tmp_path):
    with FakeServer() as server:
        config = OptimizeConfig(task="abo_object_counting_synth", method="ape", optimizer="openai/fake", rounds=1, beam=1,
                                train_limit=4, dev_limit=3, test_limit=3, minibatch=2, method_args={"paraphrases": 1},
                                optimizer_args={"api_base": server.base_url, "api_key": "x"}, optimizer_cache=None,
                                output=str(tmp_path))
        outcome = optimize(config, out=lambda line: None, lm=rule_lm())
        asked = [r.body for r in server.requests if r.path.endswith("/chat/completions")]
    calls = [json.loads(line) for r in (0, 1) for line in (outcome.run_dir / "metaprompts" / f"round-{r}.jsonl").read_text().splitlines()]
    assert [c["messages"] for c in calls] == [a["messages"] for a in asked], "exactly what the optimizer was sent"
    assert [c["round"] for c in calls] == [0, 1] and [c["template"] for c in calls] == ["initial_instruction", "paraphrase"]
    assert all(c["reply"] and c["temperature"] == 1.0 and isinstance(c["seed"], int) for c in calls)
    assert outcome.artifact_data.settings["sampling_temperature"] == 1.0


def test_opro_shows_scores_on_a_train_subset_never_dev_scores():
    bridge = make_bridge(picky_lm(), abo_n_train=8, abo_n_dev=4)
    llm = ScriptedLLM(counting_reply("Say the magic word and count"))
    ctx = make_context(bridge, llm, "opro", seed=3, dev_indices=[0, 1, 2, 3], sampling_temperature=1.0, score_examples=5)
    state = make_search("opro", ctx, rounds=2).run(None, lambda s, r: None, lambda r: None)
    subset = score_subset(ctx, 5)
    assert len(subset) == 5 and subset == score_subset(ctx, 5), "a fixed subset of train"
    meta = llm.prompts_sent("Below are earlier instructions")[-1]
    shown = dict(re.findall(r"Instruction: (.+)\nScore: (\d+)", meta))
    assert len(shown) == len(state.nodes) - len(state.trace[-1].candidates), "every prompt scored before the round"
    assert state.trace[-1].method_requests > 0, "the method's own scoring reaches the round's record"
    differs = 0
    for node in state.nodes[:-len(state.trace[-1].candidates)]:
        [train] = bridge.score([node.prompt], "train", subset)
        assert int(shown[ctx.rewritable(node.prompt).instruction]) == round(100 * train.value)
        assert node.candidate.origin == "baseline" or node.candidate.notes["train_score"] == train.value
        differs += round(100 * train.value) != round(100 * node.dev)
    assert differs, "the train and dev scores differ, so what is shown is the train one"
    assert list(map(int, shown.values())) == sorted(map(int, shown.values())), "lowest to highest"


def test_promptagent_beam_reflects_per_error_then_summarises_and_edits_with_the_trajectory():
    ctx, llm = context(counting_reply(), "promptagent-beam", expand=2, error_batch=3)
    root, _ = node_of(ctx, "Count the objects.")
    child = node_of(ctx, "Count the objects one by one.", "edit", root.key)
    candidates = METHODS["promptagent-beam"].propose(ctx, round_of([child], [root, child[0]])).candidates
    [reflect] = llm.prompts_sent("<analysis>")
    [edit] = llm.prompts_sent("new instructions")
    assert reflect.count("Correct answer:") == 3 and "accuracy" not in reflect, "the reflection sees the errors, no scores"
    assert all(f"Example {i}: Example {i} was miscounted." in edit for i in (1, 2, 3)), "each error's analysis"
    assert "in summary: Count each kind, then add" in edit
    trajectory = '1. (accuracy 0) "Count the objects."\n2. (accuracy 0) "Count the objects one by one."\n'
    assert trajectory in edit, "the trajectory from the first prompt to the current one, with train scores"
    assert len(candidates) == 2 and all(c.notes["train_score"] == 0.0 for c in candidates)


def test_apo_paraphrases_the_parent_and_keeps_a_seeded_sample_of_max_expansion_factor_children():
    def children(seed, cap):
        ctx, llm = context(counting_reply(), "apo", seed=seed, gradients=2, edits_per_gradient=1, paraphrases=1,
                           max_expansion_factor=cap)
        parent = node_of(ctx, "Count the objects.")
        found = METHODS["apo"].propose(ctx, round_of([parent])).candidates
        return parent[0], found, llm

    parent, every, llm = children(1, 10)
    assert any("Instruction: Count the objects." in p for p in llm.prompts_sent("variation")), "the parent is paraphrased"
    assert sorted(c.origin for c in every) == ["edit", "edit", "paraphrase", "paraphrase", "paraphrase"]
    assert sum(c.parent == parent.key and c.origin == "paraphrase" for c in every) == 1
    assert len(every) == 5, "2 edits, their paraphrases and the parent's: all kept under a cap of 10"
    kept = [{c.prompt.instruction for c in children(seed, 3)[1]} for seed in range(1, 6)]
    assert all(len(k) == 3 and k <= {c.prompt.instruction for c in every} for k in kept)
    assert len({frozenset(k) for k in kept}) > 1, "sampled, not the first ones"
    assert kept[0] == {c.prompt.instruction for c in children(1, 3)[1]}, "seeded"


def test_apo_sum_reflects_on_a_random_sample_of_errors():
    ctx, llm = context(counting_reply(), "apo-sum", max_errors=3, errors_shown=2, edits=1, paraphrases=0)
    node = node_of(ctx, "Count the objects.")
    METHODS["apo-sum"].propose(ctx, round_of([node]))
    [summary_prompt] = llm.prompts_sent("<summary>")
    [edit_prompt] = llm.prompts_sent("improved instruction")
    errors = round_of([node]).errors(node[0])
    questions = [ctx.task.question(s.doc) for s in errors]
    reflected = [q for q in questions if q in summary_prompt]
    assert len(errors) == 8 and len(reflected) == 3
    assert reflected != questions[:3], "not the first errors"
    assert sum(q in edit_prompt for q in reflected) == 2 and sum(q in edit_prompt for q in questions) == 2


def test_meta_prompt_inputs_are_cut_in_the_middle_keeping_both_ends():
    question = "How many fruits? " + "I have an apple. " * 80 + "Options: 3 | 4 | 5"
    output = "Let me think. " + "Step by step, one more. " * 60 + "So the answer is 4."
    errors = [{"question": question, "output": output, "answer": "4", "target": "5"}]
    [message] = metaprompts.render("apo_gradient", task_description="Count.", instruction="Count.", errors=errors, n=1)
    text = message["content"]
    assert "Question: How many fruits?" in text and "Options: 3 | 4 | 5" in text
    assert "Model's answer: Let me think." in text and "So the answer is 4." in text
    assert text.count("characters cut ...]") == 2 and question not in text and output not in text
    assert metaprompts.cut_middle("short", 10) == "short"
    cut = metaprompts.cut_middle("a" * 50 + "b" * 50, 20)
    assert cut.startswith("a" * 10) and cut.endswith("b" * 10) and "[... 80 characters cut ...]" in cut


@pytest.mark.parametrize("method", ["ape", "apo", "apo-sum", "opro", "promptagent", "promptagent-beam"])
def test_the_projection_is_the_calls_and_requests_a_run_makes(method):
    """Replies that are all different and never fix the target: every round makes every call it projects."""
    # opro and promptagent-beam show train scores on a subset: all 8 train examples here (promptagent: its own
    # batches, without scores)
    shown = 8 if method in ("opro", "promptagent-beam") else 0
    config, chosen, params = resolve_run(OptimizeConfig(task="abo_object_counting_synth", method=method, rounds=2, beam=2,
                                                        minibatch=4, method_args={"score_examples": shown} if shown else {}))
    bridge = make_bridge(rule_lm(), abo_n_train=8, abo_n_dev=4)
    llm = ScriptedLLM(counting_reply())
    ctx = make_context(bridge, llm, method, dev_indices=[0, 1, 2, 3], sampling_temperature=1.0, **config.method_args)
    calls = []
    state = make_search(method, ctx, rounds=2).run(None, lambda s, r: calls.append(llm.usage.calls), lambda r: None)
    plan = projected_rounds(method, n_train=8, n_dev=4, rounds=2, beam=2, minibatch=4, method_args=config.method_args)
    assert [b - a for a, b in zip([0] + calls, calls)] == [r["optimizer_calls"] for r in plan]
    # a beam prompt already scored on the score subset (all of train) is not scored again on its minibatch of 4:
    # promptagent-beam, the one of these that reads errors, sends 2 beam prompts x 4 requests fewer than projected
    overlap = [0] + [2 * 4 if method == "promptagent-beam" else 0] * 2
    assert [r.target.calls for r in state.trace] == [p["target_requests"] - o for p, o in zip(plan, overlap)]
    assert [len(r.candidates) for r in state.trace] == [1 + 2] + [chosen.projected(params, 2, False, 4).candidates] * 2


@pytest.mark.slow
@pytest.mark.parametrize("method, args", [
    ("apo", "gradients=1,paraphrases=1,max_expansion_factor=2"),
    ("apo-sum", "max_errors=3,errors_shown=2,edits=1,paraphrases=0,max_expansion_factor=2"),  # apo paraphrases
    ("opro", "new_prompts=2,score_examples=2"),
    ("promptagent-beam", "expand=1,error_batch=2,score_examples=2"),
])
def test_each_method_as_published_on_the_embedded_models(tmp_path, method, args):
    """`optimize` on the real models (tiny sizes): the calls stay within the printed projection, the parameters are
    recorded, and each method does what its source does."""
    task = "abo_object_counting_synth"
    proc = run_cli(bin_path("lm-eval-abo"), "optimize", "--task", task, "--method", method, "--rounds", "1", "--beam", "1",
                   "--train-limit", "4", "--dev-limit", "3", "--test-limit", "3", "--minibatch", "2",
                   "--gen_kwargs", "max_gen_toks=48", "--method-args", args, "--output", "runs",
                   "--optimizer-cache", str(tmp_path / "cache"), cwd=tmp_path)
    run_dir = tmp_path / "runs" / task / method
    artifact = store.load(run_dir / "best.yaml", task=task)
    assert artifact.settings["method_args"] == {**asdict(METHODS[method].params), **parse_pairs(args)}
    assert "projected before any call" in proc.stdout + proc.stderr
    projected = artifact.usage["projection"]["rounds"]  # as printed before the first call
    calls = [json.loads(line) for r in (0, 1) for line in (run_dir / "metaprompts" / f"round-{r}.jsonl").read_text().splitlines()]
    assert [record["round"] for record in artifact.trace] == [0, 1]
    for record in artifact.trace:
        first_tries = [c for c in calls if c["round"] == record["round"] and c["attempt"] == 0]
        plan = projected[record["round"]]
        assert len(first_tries) <= plan["optimizer"]["calls"] and record["target"]["calls"] <= plan["target"]["calls"]
    round1 = [c for c in calls if c["round"] == 1]
    parent = SearchState.from_dict(read_json(run_dir / "state.json")["state"]).node(artifact.trace[0]["best"]["key"])
    if method in ("apo", "apo-sum"):
        assert len(artifact.trace[1]["candidates"]) <= 2, "max_expansion_factor children"
    if method == "apo":
        paraphrased = [c["messages"][0]["content"] for c in round1 if c["template"] == "paraphrase"]
        assert any(f"Instruction: {parent.prompt.instruction}\n" in text for text in paraphrased), "the parent is paraphrased"
    if method == "apo-sum":
        reflections = [c for c in round1 if c["template"] == "apo_sum_reflect"]
        assert reflections, "the 0.5B target gets some of 2 examples wrong: apo-sum reflects on them"
        for reflect in reflections:
            assert 1 <= reflect["messages"][0]["content"].count("Correct answer:") <= 2, "errors of the 2-example minibatch"
    if method in ("opro", "promptagent-beam"):
        scored = [c for r in artifact.trace for c in r["candidates"] if c["origin"] != "baseline"]
        assert scored and all(c["notes"]["train_score"] in (0.0, 0.5, 1.0) for c in scored), "scored on 2 train examples"
    if method == "opro":
        meta = next(c["messages"][0]["content"] for c in round1 if c["template"] == "opro")
        assert "Score: " in meta and "on training questions" in meta
        # round 0 may propose nothing usable (the 0.5B optimizer's replies can all be dropped); `scored` above
        # holds the candidates that exist, and each of round 0's is shown to round 1 with its score
        proposed = artifact.trace[0]["candidates"][1:]
        for c in proposed:
            assert f"Score: {round(100 * c['notes']['train_score'])}" in meta
    if method == "promptagent-beam":
        reflections = [c for c in round1 if c["template"] == "promptagent_reflect"]
        assert reflections and "<analysis>" in reflections[0]["messages"][0]["content"]
        edits = [c for c in round1 if c["template"] == "promptagent_edit"]
        assert edits, "every reflection is followed by an edit"
        for edit in edits:
            assert "An analysis of each mistake" in edit["messages"][0]["content"]
            assert "1. (accuracy " in edit["messages"][0]["content"], "the trajectory with train scores"
