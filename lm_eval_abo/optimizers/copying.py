"""Whether a candidate copies its training examples: an instruction or procedure that repeats their
phrases, or names their particular objects and numbers, fits the examples rather than the task.

What counts as copied, checked against the questions of the run's training pool:
  * a run of RUN words in a row found in a training question;
  * ENTITIES or more distinct words that are particular to some training questions (each in fewer than
    half of them, so a task's own vocabulary, such as "forward" in navigation, does not count) and that
    the task's description and answer format do not use;
  * NUMBERS or more distinct such numbers.
The example from the project's own runs: "List all the fruits, snakes, mice, cauliflowers, and goats".
"""

from __future__ import annotations

import re

WORD = re.compile(r"[a-z][a-z']*|\d+")
RUN = 6
ENTITIES = 3
NUMBERS = 2
PARTICULAR = 0.5  # a word in fewer than this share of the training questions is particular to some
COMMON = frozenset(
    "about above after again against also always among another answer answers because before being below between both "
    "could does doing down during each either every first from have having here into just last less more most much must "
    "neither never next once only other over same should since some such than that their them then there these they "
    "this those through under until very what when where which while will with would your".split()
)


class Examples:
    """The training questions a candidate must not copy, indexed once per run."""

    def __init__(self, questions: list[str], allowed: str):
        self.questions = [WORD.findall(q.lower()) for q in questions]
        self.runs = {tuple(words[i : i + RUN]) for words in self.questions for i in range(len(words) - RUN + 1)}
        counts: dict[str, int] = {}
        for words in self.questions:
            for word in set(words):
                counts[word] = counts.get(word, 0) + 1
        allowed_words = set(WORD.findall(allowed.lower()))
        self.particular = {w for w, n in counts.items() if n < PARTICULAR * len(self.questions) and w not in allowed_words
                           and w not in COMMON and (len(w) > 3 or w.isdigit())}

    def copied(self, text: str) -> str | None:
        """Why `text` copies the training questions, or None."""
        words = WORD.findall(text.lower())
        for i in range(len(words) - RUN + 1):
            if tuple(words[i : i + RUN]) in self.runs:
                return f"repeats \"{' '.join(words[i : i + RUN])}\" from a training question"
        found = sorted({w for w in words if w in self.particular}, key=words.index)
        names, numbers = [w for w in found if not w.isdigit()], [w for w in found if w.isdigit()]
        if len(names) >= ENTITIES:
            return f"names the training questions' {', '.join(names[:8])}"
        if len(numbers) >= NUMBERS:
            return f"uses the training questions' numbers {', '.join(numbers[:8])}"
        return None
