"""Iterative-APE: resampling. Each round paraphrases the best instructions; no reflection on errors."""

from __future__ import annotations

from lm_eval_abo.optimizers.base import Asks, Candidate, Context, Node, Projected
from lm_eval_abo.optimizers.instructions import InstructionMethod, paraphrases


class Ape(InstructionMethod):
    name = "ape"
    defaults = {"paraphrases": 2}
    paper = {}  # APE resamples each kept prompt; the paper's unified setting fixes no other number
    uses_errors = False

    def propose(self, ctx: Context, beam: list[Node], history: list[Node], round_no: int) -> list[Candidate]:
        return paraphrases(ctx, f"round {round_no}: paraphrases", [(node, ctx.params["paraphrases"]) for node in beam])

    def projected_round(self, params: dict, beam: int) -> Projected:
        return Projected((Asks("paraphrase", beam * params["paraphrases"]),), beam * params["paraphrases"])
