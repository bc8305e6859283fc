"""Iterative-APE: resampling. Each round paraphrases the best instructions; no reflection on errors.
With --candidates N, N paraphrases a round, dealt over the kept prompts."""

from __future__ import annotations

from dataclasses import dataclass

from lm_eval_abo.infra.flags import flag
from lm_eval_abo.optimizers.base import Asks, Context, Projected, Proposal, Round, quotas
from lm_eval_abo.optimizers.instructions import InstructionMethod, paraphrases


@dataclass(frozen=True)
class ApeParams:
    paraphrases: int = flag("paraphrases of each kept prompt per round", default=2)


class Ape(InstructionMethod):
    name = "ape"
    params = ApeParams()
    paper = ApeParams()  # APE resamples each kept prompt; the paper's unified setting fixes no other number
    reads_errors = False

    def propose(self, ctx: Context, round: Round) -> Proposal:
        each = quotas(ctx.candidates, len(round.beam)) if ctx.candidates else [ctx.params.paraphrases] * len(round.beam)
        return Proposal(paraphrases(ctx, f"round {round.number}: paraphrases", list(zip(round.beam, each))))

    def projected_round(self, params: ApeParams, beam: int, candidates: int | None = None) -> Projected:
        written = candidates or beam * params.paraphrases
        return Projected((Asks("paraphrase", written),), written)
