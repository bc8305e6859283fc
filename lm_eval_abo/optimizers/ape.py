"""Iterative-APE: resampling. Each round paraphrases the best instructions; no reflection on errors."""

from __future__ import annotations

from dataclasses import dataclass

from lm_eval_abo.infra.flags import flag
from lm_eval_abo.optimizers.base import Asks, Context, Projected, Proposal, Round
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
        return Proposal(paraphrases(ctx, f"round {round.number}: paraphrases",
                                    [(node, ctx.params.paraphrases) for node in round.beam]))

    def projected_round(self, params: ApeParams, beam: int) -> Projected:
        return Projected((Asks("paraphrase", beam * params.paraphrases),), beam * params.paraphrases)
