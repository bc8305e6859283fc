"""What the reflection study shows the optimizer: two disjoint samples of a prompt's real train errors,
perturbed sets that are wrong by construction, and errors with a planted, known cause.

Every set is a list of examples as the meta-prompts show them (question, the target's reply, the answer
the task's filter extracted from it, the correct answer). What a set changes is checked, not assumed:
a wrong label differs from the true gold answer; a correct answer shown as an error passes the task's
own filter and metric; a planted error fails them.
"""

from __future__ import annotations

import re

from lm_eval_abo.infra.errors import AboError
from lm_eval_abo.optimizers.base import Context
from lm_eval_abo.scoring import ANSWER_PHRASINGS, Sample

INTEGER = re.compile(r"-?\d+")

# A planted cause: what was planted, and the transparent lexical check of whether a reflection names it
# (a case-insensitive regular expression searched in the reflection's text).
CAUSES = {
    "off_by_one": (
        "every shown answer is exactly one below the correct answer (the target's reply, with a final answer "
        "of gold - 1 written at its end)",
        r"off[\s-]*by[\s-]*(one|1)\b|(?<!one )\bby (exactly )?(one|1)\b|\bone (less|fewer|short|too (few|low|small))\b"
        r"|\b(one|1) (lower|smaller|below)\b|\bunder-?count|\bmiss(es|ed|ing)? (one|1|a single)\b",
    ),
    "cut_off": (
        "every shown reply breaks off halfway, before any answer (the target's reply cut to its first half)",
        r"truncat|\bcut (off|short)|\bincomplete|\bunfinished|\b(stops?|stopped|ends?|ended|breaks? off)"
        r" (early|before|abruptly|halfway|mid|prematurely)|(\bnever|\bnot|n't|\bfails? to) (finish|complete|reach)"
        r"|\bno (final )?answer|\b(missing|lacks?|without) (a |the )?(final )?answer",
    ),
}


def same_answer(a: str, b: str) -> bool:
    """Two answers that any sensible metric would count as one: equal up to case and spaces, or equal numbers."""
    a, b = a.strip(), b.strip()
    if a.casefold() == b.casefold():
        return True
    try:
        return float(a) == float(b)
    except ValueError:
        return False


def real_halves(ctx: Context, errors: list[Sample], k: int) -> tuple[list[Sample], list[Sample]]:
    """Two disjoint random samples of the real errors, up to k each (fewer than 2k errors: two halves)."""
    if len(errors) < 2:
        raise AboError(f"the prompt made {len(errors)} error(s) on the train examples; the study compares two disjoint "
                       "samples of errors and needs at least 2 (use more --train-limit)")
    picked = ctx.rng("reflection", "real errors").sample(errors, min(2 * k, len(errors)))
    half = (len(picked) + 1) // 2
    return picked[:half], picked[half:]


def wrong_labels(ctx: Context, errors: list[dict], golds: list[str]) -> list[dict]:
    """The errors with each correct answer replaced by a wrong one: another gold answer of the task's train
    examples (or, for a number, a number next to it), never the true gold; one that is also not the
    target's answer where the task has one (on a two-label task the only wrong label is often the
    target's own). An example with no wrong answer at hand is left out."""
    rng = ctx.rng("reflection", "wrong labels")
    out = []
    for e in errors:
        true = e["target"]
        options = set(golds)
        if INTEGER.fullmatch(true.strip()):
            g = int(true)
            options |= {str(g + d) for d in (-2, -1, 1, 2) if g + d >= 0 or g < 0}
        options = sorted(o for o in options if not same_answer(o, true))
        preferred = [o for o in options if not same_answer(o, e["answer"])] or options
        if preferred:
            out.append({**e, "target": rng.choice(preferred), "true_target": true})
    return out


def answered(ctx: Context, doc: dict, answer: str, before: str = "") -> tuple[str, bool] | None:
    """A reply ending in `answer`, in the first phrasing from which the task's own filter extracts exactly
    that answer, with whether the task's metric counts it correct; None if no phrasing works."""
    bridge = ctx.task
    texts = [f"{before.rstrip()}\n{phrasing.format(answer)}".strip() for phrasing in ANSWER_PHRASINGS]
    for text, (extracted, value) in zip(texts, bridge.check(texts, [doc] * len(texts))):
        if same_answer(extracted, answer):
            return text, bridge.correct(value)
    return None


def correct_as_errors(ctx: Context, samples: list[Sample], k: int) -> list[dict]:
    """Correctly answered train examples presented as errors: the target's own right replies first; when
    it has fewer than k, replies written with the gold answer in a phrasing the task's filter and metric
    accept (checked; marked "written")."""
    rng = ctx.rng("reflection", "correct as errors")
    rights = [s for s in samples if s.correct]
    shown = [ctx.error(s) for s in rng.sample(rights, min(k, len(rights)))]
    for s in rng.sample(samples, len(samples)):
        if len(shown) >= k:
            break
        if s.correct:
            continue
        reply = answered(ctx, s.doc, s.target)
        if reply and reply[1]:
            shown.append({**ctx.example(s.doc), "output": reply[0], "answer": s.target, "written": True})
    return shown


def planted_errors(ctx: Context, samples: list[Sample], k: int) -> tuple[str, list[dict]]:
    """Errors with a known cause, built from the target's own train replies. A task whose gold answers are
    all whole numbers gets "off_by_one": the reply with a final answer of gold - 1 written at its end;
    any other task gets "cut_off": the reply cut to its first half. Each example must be an error under
    the task's filter and metric (checked); returns the cause and up to k examples."""
    numeric = all(INTEGER.fullmatch(s.target.strip()) for s in samples)
    cause, shown = ("off_by_one" if numeric else "cut_off"), []
    for s in ctx.rng("reflection", "planted").sample(samples, len(samples)):
        if len(shown) >= k:
            break
        if numeric:
            wrong = str(int(s.target) - 1)
            reply = answered(ctx, s.doc, wrong, before=s.output)
            if reply and not reply[1]:
                shown.append({**ctx.example(s.doc), "output": reply[0], "answer": wrong, "planted": cause})
        else:
            words = s.output.split()
            cut = " ".join(words[: len(words) // 2])
            [(extracted, value)] = ctx.task.check([cut], [s.doc])
            if not ctx.task.correct(value):
                shown.append({**ctx.example(s.doc), "output": cut, "answer": extracted, "planted": cause})
    return cause, shown


def names_cause(cause: str, text: str) -> bool:
    """The lexical check: whether a reflection names the planted cause."""
    return re.search(CAUSES[cause][1], text, flags=re.IGNORECASE) is not None
