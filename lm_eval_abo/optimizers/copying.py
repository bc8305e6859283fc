"""Whether a candidate copies its training examples: an instruction or procedure that repeats their
phrases, or names their particular objects and numbers, fits the examples rather than the task.

What counts as copied, checked against the questions of the run's training pool, where a word is
*particular* when it is in fewer than half of them, a run of words when it is in fewer than a quarter
(either, also, when it is in only one), and the task's description and answer format do not use it, so
the task's own wording, such as "turn" or "do you return to the starting point" in navigation, does not
count:
  * a particular run of RUN words in a row;
  * ENTITIES or more distinct particular words;
  * NUMBERS or more distinct particular numbers, not counting the procedure's references to its own steps
    ("repeat steps 2-5").
The example from the project's own runs: "List all the fruits, snakes, mice, cauliflowers, and goats".
"""

from __future__ import annotations

import re
from collections import Counter

WORD = re.compile(r"[a-z][a-z']*|\d+")
STEP_REFERENCE = re.compile(r"\bsteps?\s+\d+(?:\s*(?:-|–|to|and|or|,)\s*\d+)*", re.IGNORECASE)
RUN = 6
ENTITIES = 3
NUMBERS = 2
WORD_SHARE = 0.5  # a word in fewer than this share of the training questions is particular to some
RUN_SHARE = 0.25  # a phrase recurring in more of them is the task's template ("Always face forward.")
COMMON = frozenset(
    "about above after again against also always among another answer answers because before being below between both "
    "could does doing down during each either every first from have having here into just last less more most much must "
    "neither never next once only other over same should since some such than that their them then there these they "
    "this those through under until very what when where which while will with would your".split()
)


def runs(words: list[str]) -> list[tuple[str, ...]]:
    """Every RUN words in a row, in order."""
    return [tuple(words[i : i + RUN]) for i in range(len(words) - RUN + 1)]


def particular(per_question: list[set], allowed: set, share: float) -> set:
    """What is in fewer than `share` of the questions or in only one, and not in the allowed text."""
    counts = Counter(item for items in per_question for item in items)
    return {item for item, n in counts.items() if (n < share * len(per_question) or n == 1) and item not in allowed}


class Examples:
    """The training questions a candidate must not copy, indexed once per run."""

    def __init__(self, questions: list[str], allowed: str):
        questions = [WORD.findall(q.lower()) for q in questions]
        allowed_words = WORD.findall(allowed.lower())
        self.runs = particular([set(runs(words)) for words in questions], set(runs(allowed_words)), RUN_SHARE)
        words = particular([set(words) for words in questions], set(allowed_words), WORD_SHARE)
        self.particular = {w for w in words if w not in COMMON and (len(w) > 3 or w.isdigit())}

    def copied(self, text: str) -> str | None:
        """Why `text` copies the training questions, or None."""
        words = WORD.findall(text.lower())
        repeated = next((run for run in runs(words) if run in self.runs), None)
        if repeated:
            return f"repeats \"{' '.join(repeated)}\" from a training question"
        found = sorted({w for w in words if w in self.particular}, key=words.index)
        referenced = set(WORD.findall(" ".join(STEP_REFERENCE.findall(text))))
        names = [w for w in found if not w.isdigit()]
        numbers = [w for w in found if w.isdigit() and w not in referenced]
        if len(names) >= ENTITIES:
            return f"names the training questions' {', '.join(names[:8])}"
        if len(numbers) >= NUMBERS:
            return f"uses the training questions' numbers {', '.join(numbers[:8])}"
        return None
