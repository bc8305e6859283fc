"""Selection: racing against full scoring on dev, and paired against score acceptance, on a simulated
target whose per-candidate accuracies are known; the search's own selection code decides.

Racing: each simulated round has K candidates with true accuracies around a common level and correlated
per-example outcomes (the same examples are hard for every prompt); `selection.race` (what
`--selection racing` runs, at --race-alpha) is compared with scoring every candidate on all of dev: target
requests per round (a (prompt, example) pair is paid once, as the bridge's memo does), how often racing
keeps the same winner, and how often it drops the truly best candidate (the highest true accuracy) or the
full-dev winner before all of dev, against the stated rate (--race-alpha).

Acceptance: whole searches of R rounds, each round proposing K candidates around the incumbent's true
accuracy (a few better, most not); the incumbent is replaced by the dev-best under `score`, or only when
the paired test agrees under `paired` (`selection.Paired`). Reported: the true accuracy of the prompt
each rule ends with (what its test score estimates, without test noise), averaged over searches.

    python bench/selection.py                  # 2000 racing rounds per setting, 400 searches per setting
    python bench/selection.py --rounds 200 --searches 40 --race-alpha 0.1
"""

from __future__ import annotations

import argparse
import random
from dataclasses import dataclass

import record

from lm_eval_abo.optimizers import selection

RACING_SETTINGS = [(8, 10, 2), (12, 50, 4), (16, 100, 4)]  # candidates, dev examples, beam
ACCEPTANCE_SETTINGS = [(10, 4, 6), (50, 4, 6), (100, 4, 6)]  # dev examples, candidates per round, rounds
RULES = {"score": selection.ByScore(), "paired": selection.Paired(0.05)}


@dataclass
class Scored:
    """What `race` reads of a score."""

    value: float
    n: int
    samples: list


@dataclass
class Per:
    """What the race reads of a sample: its pairing key (a one-target Sample's: the example) and its score."""

    key: int
    score: float


def simulate_round(rng: random.Random, k: int, n: int, level: float, spread: float) -> tuple[list[float], list[list[float]]]:
    """(true accuracies, per-candidate 0/1 outcomes on n examples): candidate accuracy ~ level + N(0, spread),
    outcomes correlated through a per-example difficulty shared by all candidates (a candidate's true accuracy
    is increasing in its p, so the highest p is the truly best)."""
    difficulty = [rng.random() for _ in range(n)]
    truths, outcomes = [], []
    for _ in range(k):
        p = min(0.98, max(0.02, rng.gauss(level, spread)))
        truths.append(p)
        outcomes.append([float(0.6 * d + 0.4 * rng.random() < p) for d in difficulty])
    return truths, outcomes


def racing_round(outcomes: list[list[float]], beam: int, alpha: float, rng: random.Random) -> tuple[int, set, int, int]:
    """(racing's winner, the candidates it dropped, requests racing paid, requests full scoring pays)."""
    n = len(outcomes[0])
    paid: set[tuple[int, int]] = set()

    def score(group, indices):
        out = []
        for c in group:
            paid.update((c, i) for i in indices)
            values = [outcomes[c][i] for i in indices]
            out.append(Scored(sum(values) / len(values), len(values), [Per(i, v) for i, v in zip(indices, values)]))
        return out

    last = selection.race(list(range(len(outcomes))), score, list(range(n)), beam, True, alpha, rng)
    complete = [i for i, s in last.items() if s.n == n]
    raced = max(complete, key=lambda i: (last[i].value, -i))
    return raced, set(last) - set(complete), len(paid), len(outcomes) * n


def racing(rounds: int, seed: int, alpha: float) -> list[dict]:
    rows = []
    for k, n, beam in RACING_SETTINGS:
        rng = random.Random(f"{seed}:{k}:{n}")
        same = within = paid = full_paid = best_dropped = winner_dropped = 0
        for r in range(rounds):
            truths, outcomes = simulate_round(rng, k, n, level=rng.uniform(0.2, 0.7), spread=0.08)
            raced, dropped, cost, full_cost = racing_round(outcomes, beam, alpha, random.Random(f"{seed}:race:{r}"))
            full = max(range(k), key=lambda i: (sum(outcomes[i]), -i))
            same += raced == full
            p = selection.gain_p(dict(enumerate(outcomes[raced])), dict(enumerate(outcomes[full])), True)
            within += raced == full or p > 0.05
            best_dropped += max(range(k), key=lambda i: truths[i]) in dropped
            winner_dropped += full in dropped
            paid, full_paid = paid + cost, full_paid + full_cost
        rows.append({"candidates": k, "dev": n, "beam": beam, "requests/round full": full_paid / rounds,
                     "requests/round racing": paid / rounds, "fewer requests": full_paid / paid,
                     "same winner": same / rounds, "same or within noise": within / rounds,
                     "true best dropped": best_dropped / rounds, "full-dev winner dropped": winner_dropped / rounds,
                     "stated rate": alpha})
    return rows


def acceptance(searches: int, seed: int) -> list[dict]:
    rows = []
    for n, k, rounds in ACCEPTANCE_SETTINGS:
        rng = random.Random(f"{seed}:{n}")
        final = {"score": [], "paired": []}
        for _ in range(searches):
            start = rng.uniform(0.2, 0.6)
            difficulty = [rng.random() for _ in range(n)]
            proposals = [[min(0.98, max(0.02, rng.gauss(0.0, 0.06))) for _ in range(k)] for _ in range(rounds)]
            noise = [[[rng.random() for _ in range(n)] for _ in range(k)] for _ in range(rounds)]
            first = Node([float(0.6 * d + 0.4 * rng.random() < start) for d in difficulty], start)
            for rule in final:
                incumbent = first
                for r in range(rounds):
                    pool = [incumbent]
                    for j in range(k):
                        p = min(0.98, max(0.02, incumbent.truth + proposals[r][j]))
                        pool.append(Node([float(0.6 * d + 0.4 * u < p) for d, u in zip(difficulty, noise[r][j])], p))
                    ranked = sorted(pool, key=lambda node: -node.dev)
                    incumbent = RULES[rule].order(ranked, incumbent, True)[0]
                final[rule].append(incumbent.truth)
        mean = {rule: sum(v) / len(v) for rule, v in final.items()}
        rows.append({"dev": n, "candidates/round": k, "rounds": rounds, "true accuracy, score": mean["score"],
                     "true accuracy, paired": mean["paired"], "paired - score": mean["paired"] - mean["score"]})
    return rows


class Node:
    """A simulated prompt: its dev outcomes and its true accuracy."""

    def __init__(self, per: list[float], truth: float):
        self.dev_per_example = dict(enumerate(per))
        self.dev = sum(per) / len(per)
        self.truth = truth


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=2000, help="simulated racing rounds per setting")
    parser.add_argument("--searches", type=int, default=400, help="simulated searches per acceptance setting")
    parser.add_argument("--seed", type=int, default=1234)
    parser.add_argument("--race-alpha", type=float, default=selection.RACE_ALPHA, help="racing's stated level")
    args = parser.parse_args()
    load = record.header("Selection on a simulated target: racing vs full scoring, paired vs score acceptance")
    race_rows = racing(args.rounds, args.seed, args.race_alpha)
    print(f"Racing at --race-alpha {args.race_alpha:g} (goal: the true best dropped in at most that share of rounds; "
          "fewer target requests; the same or a within-noise winner in >= 90% of rounds):\n")
    print(record.table(race_rows))
    accept_rows = acceptance(args.searches, args.seed)
    print("\nAcceptance (the true accuracy each rule ends with; higher is better):\n")
    print(record.table(accept_rows))
    record.save("selection", {"rounds": args.rounds, "searches": args.searches, "seed": args.seed,
                              "race_alpha": args.race_alpha,
                              "load_average_1min_at_start": load, "racing": race_rows, "acceptance": accept_rows})


if __name__ == "__main__":
    main()
