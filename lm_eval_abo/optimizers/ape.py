"""Iterative-APE: resampling. Each round paraphrases the best instructions; no reflection on errors."""

from __future__ import annotations

from lm_eval_abo.optimizers.base import Candidate, Context, Node
from lm_eval_abo.optimizers.instructions import initial_candidates, paraphrases


class Ape:
    name = "ape"
    defaults = {"paraphrases": 2}
    paper = {}  # APE resamples each kept prompt; the paper's unified setting fixes no other number
    templates = ("initial_instruction", "paraphrase", "format_reminder")
    uses_errors = False

    def initial(self, ctx: Context, beam: int) -> list[Candidate]:
        return initial_candidates(ctx, beam)

    def propose(self, ctx: Context, beam: list[Node], history: list[Node], round_no: int) -> list[Candidate]:
        return paraphrases(ctx, f"round {round_no}: paraphrases", [(node, ctx.params["paraphrases"]) for node in beam])

    def projected(self, params: dict, beam: int, initial: bool) -> tuple[int, int]:
        return (beam, beam) if initial else (beam * params["paraphrases"],) * 2
