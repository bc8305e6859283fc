"""One recorded run per method on the embedded models, replayed by test_same_numbers.py.

Recording (`python tests/recorded_runs.py`) runs every method once at tiny sizes on the real embedded
models (gemma-3-270m target, qwen2.5-coder-0.5b optimizer) with fresh caches, and keeps in
tests/data/recorded/: the target's replies (lm-eval's --use_cache sqlite file), the optimizer's replies
(its litellm disk cache) and what each run ended with (runs.json). A replay starts from copies of those
caches: every request the code sends is then answered from the cache, so the run repeats on any CPU,
whatever its llama.cpp kernels round, and a request the code no longer sends the same way misses the
cache, reaches the model and shows up as a billed call. So a change that keeps behaviour keeps every
figure: the best prompt, dev and test scores, the calls per round.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

DATA = Path(__file__).parent / "data" / "recorded"
TASK = "abo_object_counting_synth"
METHOD_ARGS = {
    "ape": {"paraphrases": 1},
    "apo": {"gradients": 1, "paraphrases": 1, "max_expansion_factor": 2},
    "apo-sum": {"max_errors": 4, "edits": 1, "paraphrases": 1, "max_expansion_factor": 2},
    "promptagent": {"expand_width": 2, "batch_size": 2},
    "promptagent-beam": {"expand": 1, "error_batch": 2, "score_examples": 2},
    "opro": {"new_prompts": 2, "history": 4, "exemplars": 1, "score_examples": 2},
    "abo": {"demos": 1, "demo_attempts": 2, "max_errors": 1, "revisions": 1},
    "abo-ablation": {"max_errors": 1, "revisions": 1},
    "gepa": {"proposals": 1, "reflection_minibatch": 2},
}


def config(method: str, folder: Path):
    from lm_eval_abo.config import OptimizeConfig

    return OptimizeConfig(
        task=TASK, method=method, model="abo-embedded", model_args="model=gemma-3-270m",
        optimizer="embedded/qwen2.5-coder-0.5b", optimizer_args={"max_tokens": 160}, rounds=1, beam=1, minibatch=2,
        train_limit=4, dev_limit=3, test_limit=3, patience=0, seed=1234, gen_kwargs={"max_gen_toks": 48},
        method_args=METHOD_ARGS[method], metadata={"abo_n_train": 8, "abo_n_dev": 6, "abo_n_test": 6},
        use_cache=str(folder / "target-cache" / "target"), optimizer_cache=str(folder / "optimizer-cache"),
        output=str(folder / "runs"),
    )


def summary(outcome) -> dict:
    """What a run ended with, as the replay compares it."""
    artifact = outcome.artifact_data
    scores, usage = artifact.scores, artifact.usage
    return {
        "best_prompt_sha256": artifact.prompt.sha256(),
        "dev": scores["dev"]["value"], "baseline_dev": scores["baseline_dev"]["value"],
        "test": scores["test"]["value"], "baseline_test": scores["baseline_test"]["value"],
        "fixed": scores["test_comparison"]["fixed"], "broken": scores["test_comparison"]["broken"],
        "rounds": [{"best": r["best"]["key"], "candidates": [c["key"] for c in r["candidates"]],
                    "optimizer_calls": r["optimizer"]["calls"], "target_requests": r["target"]["calls"]}
                   for r in artifact.trace],
        "optimizer_calls": usage["optimizer"]["calls"], "target_requests": usage["target"]["calls"],
    }


def run(method: str, folder: Path, lm) -> tuple[dict, object]:
    from lm_eval_abo.optimize import optimize

    outcome = optimize(config(method, folder), out=lambda line: None, lm=lm)
    return summary(outcome), outcome


def main() -> None:
    from lm_eval_abo.embedded.backend import EmbeddedLM

    if DATA.exists():
        shutil.rmtree(DATA)
    DATA.mkdir(parents=True)
    lm = EmbeddedLM(model="gemma-3-270m")
    found = {}
    for method in METHOD_ARGS:
        found[method], _ = run(method, DATA, lm)
        print(method, json.dumps(found[method])[:200], flush=True)
    shutil.rmtree(DATA / "runs")
    (DATA / "runs.json").write_text(json.dumps(found, indent=1) + "\n")


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).parent))
    main()
