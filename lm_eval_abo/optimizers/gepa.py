"""GEPA (Agrawal et al. 2025, arXiv 2507.19457) as a method of the one search loop, run by the `gepa`
package's own engine (`gepa.optimize`, pinned in the `gepa` extra), not a re-implementation.

Round 0 writes the seed candidates as the instruction methods do (LLM-written initial instructions). Every
later round continues ONE GEPA run, seeded with the best of round 0, for a further slice of its metric-call
budget:
GEPA samples a parent from its Pareto front, scores it on a train minibatch, has the optimizer reflect on
lm-eval's sample logs and rewrite one text component, scores the child on the same minibatch and, if it
does better there, on all of dev. Its best candidate and the rest of its Pareto front (as many as the beam
holds) are handed back to the loop, which scores them on dev (the bridge already holds those scores) and
selects as for every method. GEPA's state lives in `<run dir>/gepa/`, so `--resume` continues it.

The GEPA run sees train (reflection minibatches) and dev (its validation set) through the bridge, never
test. A candidate's one text component is the prompt's instruction; everything else (answer format,
demonstrations, answer prefix, placement) stays the seed's. The seed is the method's state, which the
loop keeps in its checkpoint; the engine's own state lives in the folder the loop gives it
(`Context.engine_dir`); GEPA's reflection calls go through the loop's recorded path to the optimizer.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, replace
from pathlib import Path

from lm_eval_abo.artifact.prompt import Prompt
from lm_eval_abo.cost.ledger import BudgetExhausted
from lm_eval_abo.infra.errors import AboError
from lm_eval_abo.infra.flags import flag
from lm_eval_abo.optimizers.base import Asks, Candidate, Context, Node, Projected, Proposal, Round, TaskView
from lm_eval_abo.optimizers.instructions import INITIAL_EXAMPLES, initial_candidates
from lm_eval_abo.scoring import Sample, pair_key

log = logging.getLogger("lm_eval_abo")
TEMPLATE = "gepa:InstructionProposalSignature"  # GEPA's own reflection prompt, as the call records name it


def engine():
    """The gepa package, or one line on how to install it."""
    try:
        import gepa
    except ImportError:
        raise AboError("this method runs the gepa package's engine, which is not installed: "
                       "pip install 'lm-eval-abo[gepa]'") from None
    return gepa


@dataclass(frozen=True)
class GepaParams:
    proposals: int = flag("a round's budget pays for this many proposals, each accepted (rejected ones cost less)",
                          default=4)
    metric_calls: int = flag("a round's metric-call budget given directly (0: from proposals and the dev size)", default=0)
    reflection_minibatch: int = flag("train examples per proposal (GEPA's default)", default=3)
    merge: int = flag("GEPA+Merge: also merge two Pareto-front candidates (GEPA's use_merge)", default=0)


def with_candidates(params: GepaParams, candidates: int | None) -> GepaParams:
    """With --candidates N: a round's budget pays for N proposals (`metric_calls`, if given, still sets it), and
    GEPA hands back N candidates, its best and the rest of its Pareto front."""
    return replace(params, proposals=candidates) if candidates else params


def round_budget(params: GepaParams, n_dev: int) -> int:
    """GEPA's metric calls per loop round: `metric_calls`, else what `proposals` proposals cost at most
    (each scores its parent and its child on a reflection minibatch, and the child on all of dev)."""
    return params.metric_calls or params.proposals * (2 * params.reflection_minibatch + n_dev)


def max_metric_calls(params: GepaParams, n_dev: int, rounds: int) -> int:
    """GEPA's `max_metric_calls` after `rounds` loop rounds of one run: its seed's dev evaluation, then a
    round's budget per round."""
    return n_dev + rounds * round_budget(params, n_dev)


# --- the prompt as GEPA's text components ---


def components(prompt: Prompt) -> dict[str, str]:
    return {"instruction": prompt.instruction}


def prompt_of(seed: Prompt, candidate: dict[str, str]) -> Prompt:
    """The seed prompt with a GEPA candidate's instruction (one GEPA left as the seed's keeps the seed
    itself, byte for byte)."""
    if candidate["instruction"] == seed.instruction:
        return seed
    return replace(seed, instruction=candidate["instruction"].strip())


# --- GEPA's adapter: the engine's one way to the task, through the bridge ---


def instances(split: str, indices: list[int], models: tuple[str, ...] = ("",)) -> list[tuple]:
    """GEPA's data instances of a split: (split, index), or, with several targets, (split, index, model), so
    its Pareto front is over (model, example)."""
    if models == ("",):
        return [(split, i) for i in indices]
    return [(split, i, m) for m in models for i in indices]


@dataclass(frozen=True)
class Trace:
    split: str
    sample: Sample


class Adapter:
    """`gepa.GEPAAdapter` over the bridge. A data instance is a (split, index) pair of the run's train pool
    (GEPA's trainset) or dev examples (its valset), with the model as a third part when several targets
    answer (`instances`); scores are the task's metric per example, negated for
    a lower-is-better metric (GEPA maximises)."""

    propose_new_texts = None  # GEPA's own reflection proposes the texts

    def __init__(self, bridge: TaskView, seed: Prompt, seed_key: str = "", folder: Path | None = None):
        self.bridge, self.seed, self.seed_key, self.folder = bridge, seed, seed_key, folder
        self.sign = 1.0 if bridge.higher_is_better else -1.0
        self.perfect = self.sign * bridge.threshold

    def get_adapter_state(self) -> dict:
        """What GEPA keeps of the adapter in its own state file: the loop node its run was seeded with."""
        return {"seed_node": self.seed_key}

    def set_adapter_state(self, state: dict) -> None:
        """On resume, GEPA's saved state must be this run's: seeded with the same node."""
        if state.get("seed_node") not in (None, self.seed_key):
            raise AboError(f"{self.folder} holds the GEPA state of another run; remove it or choose another --output")

    def evaluate(self, batch: list[tuple[str, int]], candidate: dict[str, str], capture_traces: bool = False):
        from gepa.core.adapter import EvaluationBatch

        [split] = {x[0] for x in batch}
        [score] = self.bridge.score([prompt_of(self.seed, candidate)], split, [x[1] for x in batch])
        by_key = {s.key: s for s in score.samples}
        samples = [by_key[pair_key(*x[1:])] for x in batch]
        return EvaluationBatch(outputs=[s.output for s in samples], scores=[self.sign * s.score for s in samples],
                               trajectories=[Trace(split, s) for s in samples] if capture_traces else None)

    def make_reflective_dataset(self, candidate, eval_batch, components_to_update: list[str]) -> dict[str, list[dict]]:
        """GEPA's feedback from lm-eval's sample logs: the question, the target's output, the answer the task's
        filter read from it, the gold answer and the metric's value. Train examples only: dev never reaches
        the optimizer."""
        records = [self.record(t.sample) for t in eval_batch.trajectories or [] if t.split == "train"]
        return {name: records for name in components_to_update}

    def record(self, sample: Sample) -> dict:
        verdict = "correct" if sample.correct else "wrong"
        return {
            **({"Target Model": sample.model} if sample.model else {}),
            "Inputs": self.bridge.question(sample.doc),
            "Generated Outputs": sample.output,
            "Extracted Answer": sample.answer,
            "Correct Answer": sample.target,
            "Feedback": f"The task's filter read the answer {sample.answer!r} from the output; the correct answer is "
                        f"{sample.target!r}. {self.bridge.metric_key} = {sample.score:g} ({verdict}).",
        }


class Reflection:
    """GEPA's reflection LM: its prompt, sent through the loop's recorded path to the optimizer (cache,
    ledger, retries, budget), deterministically as every reflection. A reached budget or a fatal optimizer
    error stops the engine (`stopped`, a GEPA stopper)."""

    def __init__(self, ctx: Context):
        self.ctx = ctx
        self.halted: Exception | None = None

    def __call__(self, prompt) -> str:
        messages = prompt if isinstance(prompt, list) else [{"role": "user", "content": prompt}]
        seed = self.ctx.seed_for("gepa reflection", hashlib.sha256(repr(messages).encode()).hexdigest()[:16])
        try:
            reply = self.ctx.calls.written("GEPA reflection", TEMPLATE, messages, seed)
        except (BudgetExhausted, AboError) as e:
            self.halted = e
            raise
        if reply is None:  # dropped after its retries: GEPA skips this proposal
            raise RuntimeError("the optimizer call failed after its retries")
        return reply

    def stopped(self, state) -> bool:
        return self.halted is not None or self.ctx.calls.refused() is not None


class RunLog:
    """GEPA's log, kept out of the console: lm_eval_abo's debug log."""

    @staticmethod
    def log(message: str) -> None:
        log.debug("gepa: %s", message)


class FinalState:
    """A GEPA callback that keeps the engine's state at the end of its run."""

    state = None

    def on_optimization_end(self, event) -> None:
        self.state = event["final_state"]


class Gepa:
    """Round 0 as the instruction methods, then one GEPA run across the later rounds."""

    name = "gepa"
    params = GepaParams()
    paper = GepaParams()  # the run's sizes and budget set GEPA's own numbers (README: GEPA's settings)
    patience: int | None = None  # a round without a better prompt is no reason to stop GEPA's run
    needs_generation = False  # as the instruction methods: multiple-choice tasks too

    def wants_errors(self, node: Node) -> bool:
        return False  # GEPA scores its own reflection minibatches through the adapter

    def initial(self, ctx: Context, beam: int) -> Proposal:
        engine()  # a missing package is one line before any call is made
        return Proposal(initial_candidates(ctx, ctx.candidates or beam))

    def projected(self, params: GepaParams, beam: int, initial: bool, n_dev: int, candidates: int | None = None) -> Projected:
        """Round 0 as the instruction methods. A later round: at most one reflection call per 2 x minibatch
        metric calls (its tokens counted as an edit shown the minibatch's errors); the engine checks its
        budget between iterations, so the last one may run over it by one iteration's calls."""
        if initial:
            written = candidates or beam
            return Projected((Asks("initial_instruction", written, {"examples": INITIAL_EXAMPLES}),), written)
        params = with_candidates(params, candidates)
        budget, minibatch = round_budget(params, n_dev), params.reflection_minibatch
        reflections = Asks("apo_edit", -(-budget // (2 * minibatch)), {"errors": minibatch})
        return Projected((reflections,), 0, engine_requests=budget + 2 * minibatch + n_dev)

    def written(self, params: GepaParams) -> tuple[Asks, ...]:
        return (Asks("paraphrase", 1),)

    def propose(self, ctx: Context, round: Round) -> Proposal:
        gepa, p = engine(), with_candidates(ctx.params, ctx.candidates)
        if not ctx.dev_indices:
            raise AboError("GEPA needs the run's dev examples (Context.dev_indices), its validation set")
        folder = ctx.engine_dir
        seed, seed_key = self._seed(ctx, round, folder)
        models = getattr(ctx.task, "models", ("",))
        n_dev = len(ctx.dev_indices) * len(models)
        budget = max_metric_calls(p, n_dev, round.number if folder else 1)  # without a folder, each round runs afresh
        adapter, reflection, final = Adapter(ctx.task, seed, seed_key, folder), Reflection(ctx), FinalState()
        result = gepa.optimize(
            seed_candidate=components(seed), trainset=instances("train", ctx.train_pool, models),
            valset=instances("dev", ctx.dev_indices, models), adapter=adapter, reflection_lm=reflection,
            reflection_minibatch_size=p.reflection_minibatch, use_merge=bool(p.merge),
            perfect_score=adapter.perfect, max_metric_calls=budget, stop_callbacks=reflection.stopped,
            logger=RunLog(), callbacks=[final], run_dir=str(folder) if folder else None,
            seed=ctx.seed_for("gepa", round.number), track_best_outputs=False, display_progress_bar=True,
        )
        if isinstance(reflection.halted, AboError):
            raise reflection.halted
        return Proposal(self._candidates(result, adapter, seed_key, ctx.candidates or max(len(round.beam), 1)),
                        notes=self._summary(final.state, budget, reflection, ctx),
                        state={"prompt": seed.to_dict(), "node": seed_key})

    # --- parts ---

    @staticmethod
    def _seed(ctx: Context, round: Round, folder: Path | None) -> tuple[Prompt, str]:
        """The prompt GEPA's run starts from: the best of the loop after round 0, as an instruction method
        rewrites it; kept in the method's state, so every round and a resumed run continue the same GEPA run.
        A run stopped inside its first GEPA round resumes from round 0's checkpoint, so it chooses the same
        seed again; GEPA's own state names the seed too (`Adapter.set_adapter_state`)."""
        if folder and round.state:
            if round.state["node"] not in {n.key for n in round.history}:
                raise AboError(f"{folder} holds the GEPA state of another run; remove it or choose another --output")
            return Prompt.from_dict(round.state["prompt"]), round.state["node"]
        node = round.beam[0]
        return ctx.rewritable(node.prompt), node.key

    @staticmethod
    def _summary(state, budget: int, reflection: Reflection, ctx: Context) -> dict:
        """How far GEPA's run has come, for the round's record: its budget and the proposals it allowed."""
        trace = state.full_program_trace if state else []
        proposals = sum("new_subsample_scores" in t or "new_program_subsample_scores" in t for t in trace)
        spent = state.total_num_evals if state else 0
        # a budget spent ended the run, whether or not the loop's caps are reached too (a run stopped at a cap
        # right after this round, then resumed, records the same round as one that went on)
        stopped = str(reflection.halted) if reflection.halted else \
            "the metric-call budget" if spent >= budget else ctx.calls.refused() or "a gepa.stop file"
        return {"metric_calls": f"{spent} of {budget}", "proposals": proposals,
                "accepted": len(state.program_candidates) - 1 if state else 0, "stopped_by": stopped}

    def _candidates(self, result, adapter: Adapter, seed_key: str, keep: int) -> list[Candidate]:
        """GEPA's best candidate, then the rest of its Pareto front by dev score, `keep` in all."""
        scores = result.val_aggregate_scores
        front = set().union(*result.per_val_instance_best_candidates.values()) - {result.best_idx}
        chosen = [result.best_idx, *sorted(front, key=lambda i: (-scores[i], i))][:keep]
        prompts = [prompt_of(adapter.seed, c) for c in result.candidates]
        out = []
        for i in chosen:
            parent = next((j for j in result.parents[i] if j is not None), None)
            parent_key = prompts[parent].sha256() if parent is not None else seed_key
            notes = {"gepa_candidate": i, "gepa_parents": [j for j in result.parents[i] if j is not None]}
            out.append(Candidate(prompts[i], "gepa", None if i == 0 else parent_key, notes))
        return out
