import re

import pytest

from lm_eval_abo.tasks import synthetic

WORD_NUMBERS = {w: i for i, w in enumerate(synthetic.NUMBER_WORDS)}


def count_from_text(text: str) -> int:
    """An independent reading of an object-counting question: parse the listed items and count."""
    listing, asked = re.match(r"I have (.*)\. How many (.*) do I have\?", text).groups()
    by_plural = {p: c for c, items in synthetic.CATEGORIES.items() for _, p in items}
    by_singular = {s: c for c, items in synthetic.CATEGORIES.items() for s, _ in items}
    total = 0
    for phrase in re.split(r", and |, | and ", listing):
        word, rest = phrase.split(" ", 1)
        if word in ("a", "an"):
            total += by_singular[rest] == asked
        else:
            total += WORD_NUMBERS[word] * (by_plural[rest] == asked)
    return total


def walk_from_text(text: str) -> bool:
    """An independent simulation of a navigate question from its text."""
    x = y = 0
    heading = 0  # 0 north, 1 east, 2 south, 3 west
    vectors = [(0, 1), (1, 0), (0, -1), (-1, 0)]
    face_forward = "Always face forward." in text
    for instruction in re.findall(r"(Turn \w+|Take \d+ steps?(?: \w+)?)\.", text):
        if instruction.startswith("Turn"):
            heading = (heading + {"right": 1, "around": 2, "left": 3}[instruction.split()[1]]) % 4
            continue
        parts = instruction.split()
        n, direction = int(parts[1]), parts[3] if len(parts) > 3 else "forward"
        offset = {"forward": 0, "right": 1, "backward": 2, "left": 3}[direction]
        dx, dy = vectors[(offset if face_forward else heading + offset) % 4]
        x, y = x + dx * n, y + dy * n
    return (x, y) == (0, 0)


@pytest.mark.parametrize("difficulty", synthetic.DIFFICULTIES)
def test_object_counting_answers_match_an_independent_count(difficulty):
    for ex in synthetic.generate_split("object_counting", "test", 200, seed=7, difficulty=difficulty):
        assert int(ex["target"]) == count_from_text(ex["input"]), ex


@pytest.mark.parametrize("difficulty", synthetic.DIFFICULTIES)
def test_navigate_answers_match_an_independent_walk(difficulty):
    examples = synthetic.generate_split("navigate", "test", 200, seed=7, difficulty=difficulty)
    for ex in examples:
        assert ex["target"] == ("Yes" if walk_from_text(ex["input"]) else "No"), ex
        assert ex["input"].startswith(synthetic.NAVIGATE_QUESTION) and ex["input"].endswith("- Yes\n- No")
    yes = sum(ex["target"] == "Yes" for ex in examples)
    assert 70 <= yes <= 130, f"answers should be roughly balanced, got {yes} Yes of 200"


def test_same_seed_same_data_other_seed_other_data():
    a = synthetic.generate_split("navigate", "train", 30, seed=1, difficulty=2)
    assert a == synthetic.generate_split("navigate", "train", 30, seed=1, difficulty=2)
    assert a != synthetic.generate_split("navigate", "train", 30, seed=2, difficulty=2)


@pytest.mark.parametrize("kind", sorted(synthetic.GENERATORS))
def test_splits_are_disjoint_and_independent_of_each_others_size(kind):
    splits = {s: synthetic.generate_split(kind, s, n, seed=3, difficulty=1) for s, n in [("train", 50), ("dev", 50), ("test", 200)]}
    ids = [{ex["id"] for ex in rows} for rows in splits.values()]
    assert all(len(i) == len(rows) for i, rows in zip(ids, splits.values())), "duplicates inside a split"
    assert not (ids[0] & ids[1] or ids[0] & ids[2] or ids[1] & ids[2]), "an example is in two splits"
    bigger_train = synthetic.generate_split(kind, "train", 80, seed=3, difficulty=1)
    assert bigger_train[:50] == splits["train"], "growing one split must not change its first examples"


def test_difficulty_makes_questions_longer():
    def mean_len(d):
        return sum(len(e["input"]) for e in synthetic.generate_split("object_counting", "dev", 50, 5, d)) / 50

    assert mean_len(1) < mean_len(2) < mean_len(3)


def test_bad_knobs_are_rejected():
    with pytest.raises(ValueError, match="difficulty"):
        synthetic.generate_split("navigate", "train", 5, 1, 9)
    with pytest.raises(ValueError, match="unknown synthetic task"):
        synthetic.generate_split("chess", "train", 5, 1, 1)
