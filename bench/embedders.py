"""The offline embedding model for promptfoo's `similar` and `answer-relevance`: all-MiniLM-L6-v2 in numpy
(`embedded/minilm.py`) against llama.cpp's embedding mode on the embedded GGUF target (gemma-3-270m, mean
pooling), the two candidates that run here without network.

Per model: load seconds, seconds per text (the median of `--repeats` passes over the texts, one text at a time
as a grading pass asks), and how well the cosine similarity tells paraphrases from unrelated sentences on
hand-written pairs: the mean cosine of each kind, their gap, and the share of (paraphrase, unrelated) pairs of
pairs ordered right (1.0: every paraphrase above every unrelated pair). promptfoo's `similar` passes at 0.75 by
default: the share of paraphrases and of unrelated pairs at or above it is shown too. Run with the llama.cpp
lock: `flock /tmp/llama.lock python bench/embedders.py`.
"""

from __future__ import annotations

import argparse
import sys

from record import REPO, header, median, save, stopwatch, table

sys.path.insert(0, str(REPO))

PARAPHRASES = [
    ("A man is eating food.", "A man is eating a piece of bread."),
    ("Paris is the capital of France.", "The capital city of France is Paris."),
    ("The meeting was moved to Friday.", "They rescheduled the meeting for Friday."),
    ("I have three apples and two pears.", "There are two pears and three apples here."),
    ("The answer is 42.", "So the answer is 42."),
    ("She could not find her keys this morning.", "This morning she lost her keys."),
]
UNRELATED = [
    ("A man is eating food.", "The girl is carrying a baby."),
    ("Paris is the capital of France.", "Photosynthesis turns light into chemical energy."),
    ("The meeting was moved to Friday.", "A dog chased the ball across the park."),
    ("I have three apples and two pears.", "The stock market fell sharply today."),
    ("The answer is 42.", "Please close the window before you leave."),
    ("She could not find her keys this morning.", "Volcanoes form where tectonic plates meet."),
]


def minilm_embedder():
    from lm_eval_abo.embedded import minilm

    minilm.embed(["load"])
    return lambda text: minilm.embed([text])[0][0]


def gemma_embedder():
    from llama_cpp import Llama

    from lm_eval_abo.embedded.models import model_path

    model = Llama(model_path=str(model_path("gemma-3-270m")), embedding=True, n_threads=2, verbose=False, pooling_type=1)
    return model.embed


def cosine(a, b) -> float:
    return sum(x * y for x, y in zip(a, b)) / (sum(x * x for x in a) ** 0.5 * sum(y * y for y in b) ** 0.5)


def measure(name: str, make, repeats: int) -> dict:
    with stopwatch() as elapsed:
        embed = make()
    load = elapsed()
    texts = sorted({t for pair in PARAPHRASES + UNRELATED for t in pair})
    times = []
    for _ in range(repeats):
        with stopwatch() as elapsed:
            vectors = {t: embed(t) for t in texts}
        times.append(elapsed() / len(texts))
    alike = [cosine(vectors[a], vectors[b]) for a, b in PARAPHRASES]
    apart = [cosine(vectors[a], vectors[b]) for a, b in UNRELATED]
    ordered = sum(p > u for p in alike for u in apart) / (len(alike) * len(apart))
    return {"model": name, "load s": round(load, 2), "s per text": round(median(times), 4),
            "paraphrase cos": round(sum(alike) / len(alike), 3), "unrelated cos": round(sum(apart) / len(apart), 3),
            "gap": round((sum(alike) - sum(apart)) / len(alike), 3), "ordered right": round(ordered, 3),
            "paraphrases >= 0.75": f"{sum(c >= 0.75 for c in alike)}/{len(alike)}",
            "unrelated >= 0.75": f"{sum(c >= 0.75 for c in apart)}/{len(apart)}"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    load = header("offline embedding models for similar / answer-relevance")
    rows = [measure("all-MiniLM-L6-v2 (numpy)", minilm_embedder, args.repeats),
            measure("gemma-3-270m (llama.cpp embedding, mean)", gemma_embedder, args.repeats)]
    print(table(rows))
    save("embedders", {"repeats": args.repeats, "load_average_1min_at_start": load, "rows": rows})


if __name__ == "__main__":
    main()
