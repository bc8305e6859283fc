"""Seeded generators for the offline tasks, in the BIG-Bench-Hard formats, with exact gold answers.

Every example is built from a structured form and its answer is computed from that form (counting,
or simulating the walk), never assumed from how the example was constructed.

Split membership is decided by a hash of the example text, so the splits are disjoint by construction
and each split's content does not depend on the other splits' sizes.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable

DIFFICULTIES = (1, 2, 3)
SPLIT_BUCKETS = {"train": range(0, 2), "dev": range(2, 4), "test": range(4, 10)}  # of 10 hash buckets

NUMBER_WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten"]

# (singular, plural) per category; the question names the category by its plural label.
CATEGORIES: dict[str, list[tuple[str, str]]] = {
    "fruits": [
        ("apple", "apples"), ("banana", "bananas"), ("peach", "peaches"), ("plum", "plums"),
        ("grape", "grapes"), ("orange", "oranges"), ("strawberry", "strawberries"),
        ("blackberry", "blackberries"), ("raspberry", "raspberries"), ("nectarine", "nectarines"),
    ],
    "vegetables": [
        ("carrot", "carrots"), ("potato", "potatoes"), ("onion", "onions"), ("cabbage", "cabbages"),
        ("yam", "yams"), ("stalk of celery", "stalks of celery"), ("lettuce head", "lettuce heads"),
        ("head of broccoli", "heads of broccoli"), ("cauliflower", "cauliflowers"),
        ("garlic bulb", "garlic bulbs"),
    ],
    "animals": [
        ("cat", "cats"), ("dog", "dogs"), ("goat", "goats"), ("rabbit", "rabbits"),
        ("snake", "snakes"), ("pig", "pigs"), ("cow", "cows"), ("donkey", "donkeys"),
        ("mouse", "mice"), ("frog", "frogs"), ("duck", "ducks"), ("bear", "bears"),
    ],
    "musical instruments": [
        ("piano", "pianos"), ("flute", "flutes"), ("trombone", "trombones"), ("violin", "violins"),
        ("accordion", "accordions"), ("clarinet", "clarinets"), ("drum", "drums"),
        ("trumpet", "trumpets"),
    ],
    "objects": [
        ("chair", "chairs"), ("table", "tables"), ("bed", "beds"), ("couch", "couches"),
        ("lamp", "lamps"), ("microwave", "microwaves"), ("oven", "ovens"), ("stove", "stoves"),
        ("toaster", "toasters"), ("fridge", "fridges"), ("car", "cars"),
    ],
}

# difficulty -> (kinds of the asked category, distractor kinds, largest count of one item)
COUNTING_LEVELS = {1: ((2, 3), (0, 1), 2), 2: ((3, 6), (1, 3), 3), 3: ((5, 8), (2, 4), 4)}
# difficulty -> (fewest, most) instructions before any return path is added
NAVIGATE_LEVELS = {1: (2, 3), 2: (3, 6), 3: (6, 9)}
HEADINGS = [(0, 1), (1, 0), (0, -1), (-1, 0)]  # forward, right, backward, left (clockwise)
DIRECTIONS = {"forward": 0, "right": 1, "backward": 2, "left": 3}
TURNS = {"Turn right.": 1, "Turn around.": 2, "Turn left.": 3}
NAVIGATE_QUESTION = "If you follow these instructions, do you return to the starting point?"
NAVIGATE_OPTIONS = "\nOptions:\n- Yes\n- No"


def example_id(text: str) -> str:
    """A stable id from the example's text (used to record split membership)."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]


def _with_article(word: str) -> str:
    return ("an " if word[0] in "aeio" else "a ") + word


def _join(items: list[str]) -> str:
    if len(items) == 1:
        return items[0]
    if len(items) == 2:
        return f"{items[0]} and {items[1]}"
    return ", ".join(items[:-1]) + f", and {items[-1]}"


def object_counting(rng: random.Random, difficulty: int) -> dict:
    (kmin, kmax), (dmin, dmax), max_count = COUNTING_LEVELS[difficulty]
    asked = rng.choice(sorted(CATEGORIES))
    items = [(item, asked) for item in rng.sample(CATEGORIES[asked], rng.randint(kmin, kmax))]
    if asked != "objects":  # "objects" is asked about alone: every listed thing would count
        others = [(item, cat) for cat in CATEGORIES if cat not in (asked, "objects") for item in CATEGORIES[cat]]
        items += rng.sample(others, rng.randint(dmin, dmax))
    rng.shuffle(items)
    phrases, answer = [], 0
    for (singular, plural), category in items:
        count = rng.randint(1, max_count)
        phrases.append(_with_article(singular) if count == 1 else f"{NUMBER_WORDS[count]} {plural}")
        answer += count if category == asked else 0
    return {"input": f"I have {_join(phrases)}. How many {asked} do I have?", "target": str(answer)}


def _steps(n: int) -> str:
    return f"{n} step" if n == 1 else f"{n} steps"


def walk(moves: list[tuple[str, int]]) -> tuple[int, int]:
    """Final position of a walk; a move is ("turn", quarter turns clockwise) or (direction, steps)."""
    x = y = heading = 0
    for kind, amount in moves:
        if kind == "turn":
            heading = (heading + amount) % 4
        else:
            dx, dy = HEADINGS[(heading + DIRECTIONS[kind]) % 4]
            x, y = x + dx * amount, y + dy * amount
    return x, y


def _return_path(moves: list[tuple[str, int]], face_forward: bool) -> list[tuple[str, int]]:
    """Moves that bring the walker from the end of `moves` back to the start."""
    x, y = walk(moves)
    heading = sum(a for k, a in moves if k == "turn") % 4
    path = []
    for want, dist in (((0, -1) if y > 0 else (0, 1), abs(y)), ((-1, 0) if x > 0 else (1, 0), abs(x))):
        while dist > 0:
            chunk = min(dist, 10)
            target = HEADINGS.index(want)
            if face_forward:
                path.append((["forward", "right", "backward", "left"][target], chunk))
            else:
                if (turn := (target - heading) % 4) != 0:
                    path.append(("turn", turn))
                    heading = target
                path.append(("forward", chunk))
            dist -= chunk
    return path


def _navigate_text(moves: list[tuple[str, int]], face_forward: bool) -> str:
    parts = ["Always face forward."] if face_forward else []
    for kind, amount in moves:
        if kind == "turn":
            parts.append({v: k for k, v in TURNS.items()}[amount])
        elif face_forward:
            parts.append(f"Take {_steps(amount)} {kind}.")
        else:
            parts.append(f"Take {_steps(amount)}.")
    return f"{NAVIGATE_QUESTION} {' '.join(parts)}{NAVIGATE_OPTIONS}"


def navigate(rng: random.Random, difficulty: int) -> dict:
    lo, hi = NAVIGATE_LEVELS[difficulty]
    face_forward = rng.random() < 0.5
    moves: list[tuple[str, int]] = []
    for _ in range(rng.randint(lo, hi)):
        if face_forward:
            moves.append((rng.choice(list(DIRECTIONS)), rng.randint(1, 10)))
        elif rng.random() < 0.35:
            moves.append(("turn", rng.randint(1, 3)))
        else:
            moves.append(("forward", rng.randint(1, 10)))
    if rng.random() < 0.5:  # about half the walks are made to return
        moves += _return_path(moves, face_forward)
        if face_forward:
            rng.shuffle(moves)  # facing forward, the order of moves does not matter
    elif rng.random() < 0.5 and walk(moves) != (0, 0):  # a near miss: return, then one step off
        moves += _return_path(moves, face_forward)
        kind, amount = moves[-1]
        moves[-1] = (kind, amount + 1)
    target = "Yes" if walk(moves) == (0, 0) else "No"
    return {"input": _navigate_text(moves, face_forward), "target": target}


GENERATORS: dict[str, Callable[[random.Random, int], dict]] = {
    "object_counting": object_counting,
    "navigate": navigate,
}


def generate_split(kind: str, split: str, size: int, seed: int, difficulty: int) -> list[dict]:
    """`size` distinct examples of `kind` that belong to `split` (see SPLIT_BUCKETS)."""
    if kind not in GENERATORS:
        raise ValueError(f"unknown synthetic task {kind!r}; known: {', '.join(GENERATORS)}")
    if difficulty not in DIFFICULTIES:
        raise ValueError(f"difficulty must be one of {DIFFICULTIES}, got {difficulty!r}")
    rng = random.Random(f"{kind}:{seed}:{difficulty}:{split}")
    buckets, seen, examples = SPLIT_BUCKETS[split], set(), []
    for _ in range(size * 200):
        if len(examples) == size:
            break
        example = GENERATORS[kind](rng, difficulty)
        key = example_id(example["input"])
        if int(key, 16) % 10 in buckets and key not in seen:
            seen.add(key)
            examples.append({"id": key, **example})
    if len(examples) < size:
        raise ValueError(f"could only generate {len(examples)} distinct {split} examples of {kind}")
    return examples
