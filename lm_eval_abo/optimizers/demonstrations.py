"""ABO's demonstrations: training examples solved by the optimizer following the procedure, each checked
before it is kept (`verify`), and counted by how they were written: without the gold answer, or with it
shown (`hint`), since a demonstration written towards a shown answer passes the answer check far more
easily than one written without it."""

from __future__ import annotations

from collections import Counter

from lm_eval_abo.artifact.prompt import Demonstration
from lm_eval_abo.optimizers.base import Context
from lm_eval_abo.optimizers.procedure import parse_solution, step_check

PASSES = {"fallback": (False, True), "always": (True,), "never": (False,)}  # with the answer shown, per pass


def answer_format(ctx: Context) -> str:
    return ctx.task.answer_format or "End with the final answer."


def demonstrations(ctx: Context, steps: list[str], purpose: str, preferred: list[int]) -> tuple[list[Demonstration], dict]:
    """Up to `demos` demonstrations of the procedure on training examples (the `preferred` ones first, e.g.
    those that failed at a revised step), each checked (`verify`); with `hint=fallback`, the examples whose
    solution failed are written again with the gold answer shown. Without steps, plain chain-of-thought
    demonstrations (the paper-table's demonstrations-only control). Returns them and the counts: examples
    tried, demonstrations kept and how many of those were written with the answer shown, and per pass
    (`without_answer`, `with_answer`) the examples asked, those verified and the check the others failed."""
    p = ctx.params
    if not p.demos:
        return [], {}
    docs = ctx.task.docs("train")
    others = [i for i in ctx.rng(purpose, "order").sample(ctx.train_pool, len(ctx.train_pool)) if i not in preferred]
    tried = (list(dict.fromkeys(preferred)) + others)[: p.demo_attempts]
    counts: dict = {"tried": len(tried)}
    kept: list[tuple[Demonstration, bool]] = []
    for hint in PASSES[p.hint]:
        requests = [("abo_demonstration" if steps else "cot_demonstration", {
            **({"procedure": steps} if steps else {}), "question": ctx.task.question(docs[i]),
            "answer_format": answer_format(ctx), "target_hint": ctx.task.gold(docs[i]) if hint else "",
        }) for i in tried]
        solutions = ctx.ask(purpose + (" (answer shown)" if hint else ""), requests, parse_solution, "solution")
        verdicts, failed = Counter(asked=len(tried)), []
        for i, solution in zip(tried, solutions):
            verdict, text = verified(ctx, docs[i], solution, steps)
            verdicts["verified" if verdict == "kept" else verdict] += 1
            if verdict == "kept":
                kept.append((Demonstration(doc=docs[i], output=text), hint))
            else:
                failed.append(i)
        counts["with_answer" if hint else "without_answer"] = dict(verdicts)
        tried = failed
        if len(kept) >= p.demos or not tried:
            break
    kept = kept[: p.demos]
    counts.update(kept=len(kept), kept_with_answer=sum(hint for _, hint in kept))
    return [demo for demo, _ in kept], counts


def verified(ctx: Context, doc: dict, solution: str | None, steps: list[str]) -> tuple[str, str]:
    """("kept", the text to keep) or the check it failed: "unparsed", a step check's ("steps", "empty_step",
    "off_step": `procedure.step_check`) or "answer"."""
    if solution is None:
        return "unparsed", ""
    mode = ctx.params.verify
    if mode == "none":
        return "kept", solution
    start = 0
    if mode == "steps" and steps:
        start, failed = step_check(solution, steps)
        if failed:
            return failed, solution
    # keep what verifies, up to the first line of the last step's work on which the answer is right:
    # what the optimizer wrote after it (often the answer format echoed back) is not worth imitating
    lines = solution[start:].splitlines()
    cuts = [solution[:start] + "\n".join(lines[:k]).rstrip() for k in range(1, len(lines) + 1)]
    checks = ctx.task.check(cuts, [doc] * len(cuts))
    text = next((cut for cut, (_, score) in zip(cuts, checks) if ctx.task.correct(score)), None)
    return ("kept", text) if text is not None else ("answer", solution)
