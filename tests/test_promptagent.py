"""PromptAgent's tree search as its source runs it: UCT selection, expansion width, simulation to the depth limit,
early stop and back-propagation, checked against values worked out by hand; then the method on the loop, with a
scripted optimizer and a rule-based target (real lm-eval scoring)."""

import math
import re
from dataclasses import replace

import pytest
from conftest import ScriptedLLM, make_bridge, make_context, make_search, rule_lm

from lm_eval_abo.optimizers import METHODS
from lm_eval_abo.optimizers.base import Candidate, Node, Round
from lm_eval_abo.optimizers.promptagent.tree import Limits, Tree, TreeNode
from lm_eval_abo.optimizers.result import SearchState


def test_uct_is_q_plus_the_weighted_exploration_term_and_selection_takes_its_highest():
    # root with 3 cumulative rewards; x explored 3 times (Q = 1.8), y never (Q = its reward, 0.2)
    def tree(w_exp):
        t = Tree(Limits(w_exp=w_exp), [TreeNode(0, "root", None, 0, 0.5, [1, 2], [1.0, 1.0, 1.0]),
                                        TreeNode(1, "x", 0, 1, 0.9, [], [1.8, 1.8, 1.8]),
                                        TreeNode(2, "y", 0, 1, 0.2)], threshold=0.9, floor=0.5)
        return t

    t = tree(2.5)
    # x: 1.8 + 2.5 * sqrt(ln 4 / 3) = 1.8 + 2.5 * 0.679778 = 3.499445; y: 0.2 + 2.5 * sqrt(ln 4) = 0.2 + 2.943525
    assert t.uct(t.nodes[1]) == pytest.approx(3.499445, abs=1e-6)
    assert t.uct(t.nodes[2]) == pytest.approx(3.143525, abs=1e-6)
    assert t.uct(t.nodes[0]) == pytest.approx(1.0 + 0.0), "the root: no parent, ln(1) = 0"
    assert t._select() == [0, 1], "exploitation wins at w_exp 2.5"
    t = tree(4.0)
    # x: 1.8 + 4 * 0.679778 = 4.519112; y: 0.2 + 4 * 1.177410 = 4.909640
    assert t._select() == [0, 2], "the unexplored child wins with more exploration"


def test_a_tree_is_searched_as_the_source_searches_it():
    """Width 4 (2 steps x 2 prompts), depth limit 3, min depth 2, 3 iterations, w_exp 2.5; rewards chosen here."""
    t = Tree.start("R", 0.5, Limits(expand_width=2, depth_limit=3, min_depth=2, iterations=3, w_exp=2.5))
    assert t.advance() == 0, "iteration 1: the root is a leaf, so it is expanded"
    _, c2, _, _ = t.expanded([("c1", 0.25), ("c2", 0.75), ("c3", 0.5), ("c4", 0.0)])
    assert t.advance() == c2, "simulation: the child of highest reward, expanded as it has no children"
    d1, _, _, _ = t.expanded([("d1", 0.5), ("d2", 0.5), ("d3", 0.25), ("d4", 0.5)])
    assert t.advance() == d1, "the first of the children of highest reward"
    e1, e2, e3, e4 = t.expanded([("e1", 0.25), ("e2", 1.0), ("e3", 0.25), ("e4", 0.25)])
    assert all(t.nodes[e].terminal for e in (e1, e2, e3, e4)), "depth 3 is the limit"
    # iteration 1 ends at e2 (reward 1.0 beats the threshold 0.75 deeper than min depth: an early stop);
    # iteration 2 selects R, c2 (UCT 2.25 + 2.5 sqrt(ln 2) = 4.331), d1, e2 (1.0 + 2.081 against 0.25 + 2.081), at the
    # depth limit; iteration 3 selects R, c2, d1, then e1: 0.25 + 2.5 sqrt(ln 3) = 2.870 beats e2's 1.0 + 2.5 sqrt(ln 3 / 2)
    # = 2.853 (exploration); e1 is at the depth limit too. Then the iterations are done. Each node of a path gets the
    # sum of the rewards from it to the path's end: iteration 3's path R, c2, d1, e1 gives 2.0, 1.5, 0.75, 0.25.
    assert t.advance() is None and t.iteration == 3 and t.threshold == 1.0
    cum = {t.nodes[i].key: t.nodes[i].cum_rewards for i in range(len(t.nodes)) if t.nodes[i].cum_rewards}
    assert cum == {"R": [2.75, 2.75, 2.0], "c2": [2.25, 2.25, 1.5], "d1": [1.5, 1.5, 0.75], "e2": [1.0, 1.0], "e1": [0.25]}
    visited = {t.nodes[i].key: t.nodes[i].visited for i in range(len(t.nodes)) if t.nodes[i].visited}
    assert visited == {"R": 3, "c2": 3, "d1": 3, "e2": 2, "e1": 1}
    assert [t.nodes[i].expand_times for i in (0, c2, d1)] == [1, 1, 1] and max(n.depth for n in t.nodes) == 3
    assert Tree.from_dict(t.to_dict()) == t, "the checkpoint keeps all of it"


def test_a_node_below_the_reward_floor_is_terminal_deeper_than_min_depth():
    t = Tree.start("R", 0.6, Limits(expand_width=1, depth_limit=8, min_depth=0, iterations=1))
    assert t.advance() == 0
    [a] = t.expanded([("a", 0.5)])
    # the floor of a child of the root is the root's reward, 0.6: a (0.5) is terminal, so the iteration ends there
    assert t.nodes[a].terminal and t.advance() is None
    assert t.nodes[0].cum_rewards == [1.1] and t.nodes[a].cum_rewards == [0.5]


# --- the method ---


def scripted():
    """Reflections on every example shown, and new prompts numbered in the order they are written."""
    written = []

    def reply(messages):
        text = messages[0]["content"]
        if "<analysis>" in text:
            return "".join(f"<analysis>Example {i}.</analysis>" for i in range(1, text.count("Correct answer:") + 1)) + \
                "<summary>Count each kind.</summary>"
        asked = re.search(r"write (\d+) new instruction", text)  # else an initial instruction: one
        n = int(asked.group(1)) if asked else 1
        out = []
        for _ in range(n):
            written.append(1)
            out.append(f"<prompt>Count the items, version {len(written)}.</prompt>")
        return "".join(out)

    return reply


def method_context(llm, keyword="magic", **params):
    bridge = make_bridge(rule_lm(keyword), abo_n_train=8, abo_n_dev=4)
    return make_context(bridge, llm, "promptagent", dev_indices=[0, 1, 2, 3], sampling_temperature=1.0, **params)


def scored(candidates, devs, round_no):
    return [Node(c, round_no, dev, None, 4, {}) for c, dev in zip(candidates, devs)]


def test_the_method_expands_the_tree_with_the_published_width_on_fresh_batches_to_the_depth_limit():
    llm = ScriptedLLM(scripted())
    ctx = method_context(llm, expand_width=2, num_new_prompts=2, batch_size=5, depth_limit=3, min_depth=2, iterations=3)
    method = METHODS["promptagent"]
    root = Node(Candidate(replace(ctx.base_prompt, instruction="Count the objects."), "initial"), 0, 0.5, None, 4, {})
    history, state, expanded = [root], {}, []
    train = {ctx.task.question(d): i for i, d in enumerate(ctx.task.docs("train"))}
    rewards = [[0.25, 0.75, 0.5, 0.0], [0.5, 0.5, 0.25, 0.5], [0.25, 1.0, 0.25, 0.25]]  # as in the tree test above
    for round_no in (1, 2, 3):
        asked = len(llm.requests)
        proposal = method.propose(ctx, Round(round_no, [root], list(history), {}, state))
        requests = [m[0]["content"] for m in llm.requests[asked:]]
        reflections = [r for r in requests if "<analysis>" in r]
        edits = [r for r in requests if "new instructions" in r]
        assert len(reflections) == 2 and len(edits) == 2 and len(proposal.candidates) == 4, "2 steps of 2 new prompts"
        shown = [{train[q] for q in re.findall(r"Question: (.+?)\nModel's answer", r, flags=re.S)} for r in reflections]
        assert [len(s) for s in shown] == [5, 3] and shown[0] | shown[1] == set(range(8)), \
            "an epoch of the 8 train examples in batches of 5: every example once, the last batch shorter"
        [parent] = {c.parent for c in proposal.candidates}
        expanded.append(parent)
        path = re.findall(r'^\d\. "(.+)"$', edits[0], flags=re.M)
        assert path == [n.prompt.instruction for n in history if n.key in expanded or n is root][: round_no]
        assert "accuracy" not in edits[0], "the trajectory shows no scores"
        new = scored(proposal.candidates, rewards[round_no - 1], round_no)
        history += new
        state = proposal.state
    by_key = {n.key: n for n in history}
    assert [by_key[k].prompt.instruction for k in expanded] == [
        "Count the objects.", "Count the items, version 2.", "Count the items, version 5."], "R, then c2, then d1"
    final = method.propose(ctx, Round(4, [root], list(history), {}, state))
    assert final.candidates == [] and final.finished and "3 iterations" in final.finished


def test_a_batch_answered_right_is_reflected_on_as_right_answers():
    llm = ScriptedLLM(scripted())
    ctx = method_context(llm, expand_width=1, num_new_prompts=1)
    root = Node(Candidate(replace(ctx.base_prompt, instruction="Say the magic word."), "initial"), 0, 1.0, None, 4, {})
    [candidate] = METHODS["promptagent"].propose(ctx, Round(1, [root], [root], {}, {})).candidates
    [reflect] = llm.prompts_sent("<analysis>")
    assert "got these examples right" in reflect and "So the answer is" in reflect
    assert candidate.parent == root.key


def test_on_the_loop_the_search_stops_when_its_iterations_are_done_and_resumes_from_its_checkpoint():
    llm = ScriptedLLM(scripted())
    ctx = method_context(llm, expand_width=2, num_new_prompts=1, depth_limit=1, iterations=1)
    saved = []
    search = make_search("promptagent", ctx, beam=1, rounds=5)
    state = search.run(None, lambda s, r: saved.append(SearchState.from_dict(s.to_dict())), lambda r: None)
    # round 1 expands the root; its children sit at the depth limit, so round 2 ends the only iteration
    assert [len(r.candidates) for r in state.trace] == [1 + 1, 2, 0]
    assert state.round == 2 and state.stopped == "PromptAgent's tree search ran its 1 iterations"
    assert state.trace[1].notes["mcts"]["expanding"] == 0 and state.trace[1].method_requests == 8
    after_round_1 = saved[1]
    ctx2 = method_context(ScriptedLLM(scripted()), expand_width=2, num_new_prompts=1, depth_limit=1, iterations=1)
    resumed = make_search("promptagent", ctx2, beam=1, rounds=5).run(after_round_1, lambda s, r: None, lambda r: None)
    assert resumed.method_state["tree"] == state.method_state["tree"] and resumed.stopped == state.stopped


def test_parameters_and_the_paper_preset():
    method = METHODS["promptagent"]
    p = method.paper
    assert (p.expand_width, p.num_new_prompts, p.batch_size, p.depth_limit, p.min_depth, p.iterations, p.w_exp,
            p.score_examples) == (3, 1, 5, 8, 2, 12, 2.5, 0)
    assert METHODS["promptagent-beam"].paper.score_examples == 0, "the beam variant's trajectory shows no scores either"
    plan = method.projected(p, beam=4, initial=False, n_dev=10)
    assert (plan.calls, plan.candidates, plan.scored, plan.reads_errors) == (6, 3, 15, False)
    assert math.isclose(2.5, p.w_exp)
