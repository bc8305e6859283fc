"""ABO's procedures as text: numbered steps parsed from the optimizer's replies, a revised step spliced
in, the answer step kept when a procedure is cut, and whether a worked solution follows the steps: its
labels, and the work written under each."""

from __future__ import annotations

import re
from collections import Counter

from lm_eval_abo.optimizers.base import first_tag

KINDS = ("not_followed", "wrong")
MAX_STEP_CHARS = 400
STEP_LABEL = re.compile(r"^\s*(?:[*_#>\s-]*)step\s*(\d{1,2})\b\s*[:.)]", re.I | re.M)


def parse_steps(text: str, tag: str = "procedure", min_steps: int = 2) -> list[str] | None:
    """Numbered steps ("1. ...", "Step 2: ...") from a <tag> block; None if fewer than `min_steps`."""
    block = first_tag(tag)(text)
    if block is None:
        return None
    steps, after_blank = [], False
    for line in block.splitlines():
        m = re.match(r"^\s*(?:[-*]\s*)?(?:step\s*)?(\d{1,2})\s*[.):]\s*(.+)$", line, flags=re.I)
        if m:
            steps.append(m.group(2).strip()[:MAX_STEP_CHARS])
        elif steps and line.strip() and not after_blank and not line.strip().startswith(("-", "*")):
            steps[-1] = f"{steps[-1]} {line.strip()}"[:MAX_STEP_CHARS]  # a step that wraps onto the next line
        after_blank = not line.strip() or (after_blank and not m)  # text after a blank line is not a step
    return steps if len(steps) >= min_steps else None


def capped(steps: list[str], limit: int) -> list[str]:
    """At most `limit` steps; a procedure cut short keeps its last step, which gives the answer."""
    return steps if len(steps) <= limit else [*steps[: limit - 1], steps[-1]]


def splice(steps: list[str], step: int, replacement: list[str]) -> list[str] | None:
    """The procedure with step `step` replaced; None when nothing changes. Small optimizers often hand
    back a whole procedure for one step: a reply that repeats other steps of it, or is as long as a
    procedure of four or more steps, is taken as a full revision rather than spliced into the middle."""
    if replacement == steps or replacement == [steps[step - 1]]:
        return None
    others = set(steps[: step - 1] + steps[step:])
    if len(replacement) >= max(len(steps), 4) or sum(s in others for s in replacement) >= 2:
        return replacement
    return steps[: step - 1] + replacement + steps[step:]


def parse_solution(text: str) -> str | None:
    """A demonstration from a <solution> block; small optimizers often drop the tags but still write
    the steps, so text from the first "Step 1" on is accepted too (verification judges it anyway)."""
    tagged = first_tag("solution")(text)
    if tagged:
        return tagged
    start = re.search(r"step\s*1\s*[:.)]", text, flags=re.I)
    return text[start.start() :].replace("```", "").strip() if start else None


def follows(solution: str, n_steps: int) -> int | None:
    """Where the last step's work starts, if `solution` works through steps 1..n_steps in order, each
    labelled once ("Step i:" at the start of a line), none skipped or merged; else None."""
    labels = list(STEP_LABEL.finditer(solution))
    if [int(m.group(1)) for m in labels] != list(range(1, n_steps + 1)):
        return None
    return labels[-1].start()


# words that say nothing of what a step does (and "answer": every last step and every solution's end has it)
PLAIN_WORDS = frozenset(
    "the and for with that this then than each every from into onto are was were its their them they there which what "
    "when where how all any not but you your one ones use using given give write step steps answer final".split())


def _tokens(text: str) -> set[str]:
    return set(re.findall(r"[a-z0-9]+", text.lower()))


def _words(text: str) -> set[str]:
    """The words of `text` that say what is done: 3 letters or more, not plain, a plural's s dropped."""
    return {w[:-1] if len(w) > 3 and w.endswith("s") else w for w in re.findall(r"[a-z]+", text.lower())
            if len(w) >= 3 and w not in PLAIN_WORDS}


def step_check(solution: str, steps: list[str]) -> tuple[int | None, str | None]:
    """Whether `solution` works through `steps` step by step: (where the last step's work starts, None), or
    (None, the check it failed). "steps": the labels are not "Step 1:" ... "Step N:", each once, in order
    (`follows`); "empty_step": a step's text is empty or only repeats the step; "off_step": a step's text does
    another step's work (it shares no word with its own step and two or more with another one)."""
    labels = list(STEP_LABEL.finditer(solution))
    if [int(m.group(1)) for m in labels] != list(range(1, len(steps) + 1)):
        return None, "steps"
    ends = [m.start() for m in labels[1:]] + [len(solution)]
    for i, (label, end) in enumerate(zip(labels, ends)):
        work = solution[label.end() : end]
        if not _tokens(work) - _tokens(steps[i]):
            return None, "empty_step"
        done = _words(work)
        elsewhere = max((len(done & _words(other)) for j, other in enumerate(steps) if j != i), default=0)
        if not done & _words(steps[i]) and elsewhere >= 2:
            return None, "off_step"
    return labels[-1].start(), None


def parse_location(text: str, n_steps: int) -> dict | None:
    """{"step", "kind", "why"} from a localisation reply, or None if malformed."""
    step, kind = first_tag("step")(text), first_tag("kind")(text)
    number = re.search(r"\d+", step or "")
    kind = (kind or "").strip().lower().replace(" ", "_").replace("-", "_")
    if not number or kind not in KINDS or not 1 <= int(number.group()) <= n_steps:
        return None
    return {"step": int(number.group()), "kind": kind, "why": (first_tag("why")(text) or "")[:300]}


def step_failure_table(located: list[dict], n_steps: int) -> list[dict]:
    counts = Counter((loc["step"], loc["kind"]) for loc in located)
    return [
        {"step": i, "not_followed": counts[(i, "not_followed")], "wrong": counts[(i, "wrong")]}
        for i in range(1, n_steps + 1)
    ]
