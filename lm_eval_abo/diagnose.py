"""`lm-eval-abo diagnose`: the paper's two studies of reflection-based optimization, as commands.

reflection: does the optimizer read the errors? It reflects on a prompt's real train errors and on
  perturbed sets (the same errors with shuffled gold answers; correctly answered examples presented as
  errors; errors from another task). Reflections are compared with a lexical measure, TF-IDF cosine
  similarity over words (scikit-learn, no model download). Sensitivity = similarity among reflections on
  the real errors (different samples) minus similarity between real and perturbed reflections: near 0,
  the optimizer writes the same feedback whatever the errors are, i.e. it follows its own prior.
refinement: does one refinement step change the target's behaviour? The method's proposals for one
  round are scored on dev next to the prompt they refine: fix rate (old errors now right), break rate
  (old correct now wrong) and net change, all through lm-eval.
"""

from __future__ import annotations

import itertools
from dataclasses import replace
from pathlib import Path

from lm_eval_abo import store
from lm_eval_abo.errors import AboError
from lm_eval_abo.files import write_json, write_text_atomic
from lm_eval_abo.config import OptimizeConfig
from lm_eval_abo.markdown import fmt, table
from lm_eval_abo.session import open_session
from lm_eval_abo.optimizers import METHODS
from lm_eval_abo.optimizers.base import Context, Node, all_tags
from lm_eval_abo.prompt import Prompt

PERTURBATIONS = ("shuffled_labels", "correct_as_errors", "other_task")
OTHER_TASK = {"abo_object_counting_synth": "abo_navigate_synth"}


def similarity(texts_a: list[str], texts_b: list[str] | None = None) -> float | None:
    """Mean TF-IDF cosine similarity: within `texts_a` (distinct pairs), or across a and b."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.metrics.pairwise import cosine_similarity

    texts = texts_a + (texts_b or [])
    if len(texts_a) < (1 if texts_b else 2) or (texts_b is not None and not texts_b):
        return None
    vectors = TfidfVectorizer().fit_transform(texts)
    sims = cosine_similarity(vectors)
    n = len(texts_a)
    if texts_b is None:
        pairs = list(itertools.combinations(range(n), 2))
    else:
        pairs = [(i, j) for i in range(n) for j in range(n, len(texts))]
    return float(sum(sims[i, j] for i, j in pairs) / len(pairs))


def _prompt_of(session, artifact: str | None) -> Prompt:
    return store.load(artifact, task=session.config.task).prompt if artifact else session.bridge.default_prompt


def _node(prompt: Prompt, score) -> Node:
    from lm_eval_abo.optimizers.base import Candidate

    return Node(Candidate(prompt, "studied"), 0, score.value, score.stderr, score.n, {s.index: s.score for s in score.samples})


def error_sets(ctx: Context, samples, other_errors, k: int) -> dict[str, list[dict]]:
    """The real errors and the three perturbed sets, each of up to k examples as the optimizer sees them."""
    rng = ctx.rng("diagnose", "sets")
    errors = [s for s in samples if not s.correct]
    if not errors:
        raise AboError("the prompt made no errors on the train examples: nothing to reflect on (use more --train-limit)")
    real = [ctx.error(s) for s in rng.sample(errors, min(k, len(errors)))]
    targets = [e["target"] for e in real]
    shuffled = targets[1:] + targets[:1] if len(set(targets)) > 1 else [f"{t} (changed)" for t in targets]
    rights = [ctx.error(s) for s in samples if s.correct]
    if len(rights) < k:  # too few right answers: write correct replies for other train examples
        docs = ctx.bridge.docs("train")
        for i in ctx.train_pool:
            if len(rights) >= k:
                break
            doc = docs[i]
            gold = ctx.bridge.gold(doc)
            rights.append({**ctx.example(doc), "output": f"So the answer is {gold}.", "answer": gold})
    return {
        "real": real,
        "shuffled_labels": [{**e, "target": t} for e, t in zip(real, shuffled)],
        "correct_as_errors": rng.sample(rights, min(k, len(rights))),
        "other_task": other_errors[:k],
    }


def reflection_study(config: OptimizeConfig, artifact: str | None = None, samples: int = 3, k: int = 4,
                     other_task: str | None = None, out=print, lm=None) -> dict:
    config = config.resolved()
    session = open_session(config, lm, reads_text="diagnose reflection")
    ctx = session.context(params={})
    prompt = _prompt_of(session, artifact)
    [train] = session.bridge.score([prompt], "train", session.train_pool)
    other_name = other_task or OTHER_TASK.get(config.task) or next(
        (t for t in OTHER_TASK.values() if t != config.task), "abo_object_counting_synth")
    other = open_session(replace(config, task=other_name), lm=session.target.inner)
    [other_train] = other.bridge.score([other.bridge.default_prompt], "train", other.train_pool)
    other_ctx = other.context(params={})
    sets = error_sets(ctx, train.samples, [other_ctx.error(s) for s in other_train.errors()], k)

    requests, owners = [], []
    for name, errors in sets.items():
        for i in range(samples):
            owners.append(name)
            requests.append(("apo_gradient", {
                "task_description": ctx.task_description, "instruction": prompt.instruction_block(), "errors": errors, "n": 3,
            }))
    replies = ctx.ask("reflections", requests, all_tags("reason"), "reason")
    reflections = {name: [] for name in sets}
    for name, reasons in zip(owners, replies):
        if reasons:
            reflections[name].append(" ".join(reasons))
    within = similarity(reflections["real"])
    rows = []
    for name in PERTURBATIONS:
        cross = similarity(reflections["real"], reflections[name])
        rows.append({
            "perturbation": name, "errors_shown": len(sets[name]), "reflections": len(reflections[name]),
            "similarity_to_real": cross,
            "sensitivity": None if cross is None or within is None else within - cross,
        })
    result = {
        "task": config.task, "optimizer": config.optimizer, "measure": "TF-IDF cosine similarity (scikit-learn)",
        "prompt_sha256": prompt.sha256(), "train_errors": len(train.errors()), "train_examples": train.n,
        "within_real_similarity": within, "rows": rows, "reflections": reflections, "error_sets": sets,
        "usage": session.ledger.to_dict(),
    }
    _save(config, "reflection", result, reflection_markdown(result), out)
    return result


def refinement_study(config: OptimizeConfig, artifact: str | None = None, out=print, lm=None) -> dict:
    config = config.resolved()
    session = open_session(config, lm, reads_text="diagnose refinement")
    ctx = session.context()
    prompt = _prompt_of(session, artifact)
    [dev] = session.bridge.score([prompt], "dev", session.dev_indices)
    node = _node(prompt, dev)
    batch = ctx.rng("minibatch", 1).sample(session.train_pool, min(config.minibatch, len(session.train_pool)))
    [train] = session.bridge.score([prompt], "train", batch)
    node.train_samples = train.samples
    candidates = METHODS[config.method].propose(ctx, [node], [node], 1)
    candidates = [c for c in candidates if c.key != node.key]
    if not candidates:
        raise AboError(f"{config.method} proposed no refinement (no train errors, or no usable optimizer reply)")
    scores = session.bridge.score([c.prompt for c in candidates], "dev", session.dev_indices)
    old = node.dev_per_example
    wrong, right = [i for i, v in old.items() if v < 1], [i for i, v in old.items() if v >= 1]
    rows = []
    for c, score in zip(candidates, scores):
        new = {s.index: s.score for s in score.samples}
        fixed, broken = sum(new[i] >= 1 for i in wrong), sum(new[i] < 1 for i in right)
        rows.append({
            "candidate": c.key[:12], "origin": c.origin, "dev": score.value, "fixed": fixed, "broken": broken,
            "fix_rate": fixed / len(wrong) if wrong else None, "break_rate": broken / len(right) if right else None,
            "net": score.value - dev.value,
        })
    mean = {k: _mean([r[k] for r in rows]) for k in ("fix_rate", "break_rate", "net")}
    result = {
        "task": config.task, "method": config.method, "optimizer": config.optimizer, "prompt_sha256": prompt.sha256(),
        "dev_n": dev.n, "old_dev": dev.value, "old_errors": len(wrong), "rows": rows, "mean": mean,
        "usage": session.ledger.to_dict(),
    }
    _save(config, "refinement", result, refinement_markdown(result), out)
    return result


def _mean(values):
    values = [v for v in values if v is not None]
    return sum(values) / len(values) if values else None


def reflection_markdown(r: dict) -> str:
    return "\n".join([
        f"# Reflection sensitivity: {r['task']}, optimizer {r['optimizer']}",
        "",
        f"Measure: {r['measure']}. Similarity among reflections on the real errors: {fmt(r['within_real_similarity'])}.",
        "Sensitivity = that minus the similarity to reflections on a perturbed set; near 0 (or below) means the",
        "optimizer's feedback does not depend on the errors it is shown.",
        "",
        *table(["perturbation", "errors shown", "reflections", "similarity to real", "sensitivity"],
               [[x["perturbation"], x["errors_shown"], x["reflections"], fmt(x["similarity_to_real"]), fmt(x["sensitivity"])]
                for x in r["rows"]]),
    ])


def refinement_markdown(r: dict) -> str:
    mean = r["mean"]
    return "\n".join([
        f"# One refinement step: {r['task']}, {r['method']}, optimizer {r['optimizer']}",
        "",
        f"Prompt refined: dev {fmt(r['old_dev'])} on {r['dev_n']} examples ({r['old_errors']} errors).",
        "",
        *table(["candidate", "origin", "dev", "fixed", "broken", "fix rate", "break rate", "net"],
               [*([x["candidate"], x["origin"], fmt(x["dev"]), x["fixed"], x["broken"], fmt(x["fix_rate"]),
                   fmt(x["break_rate"]), fmt(x["net"])] for x in r["rows"]),
                ["mean", "", "", "", "", fmt(mean["fix_rate"]), fmt(mean["break_rate"]), fmt(mean["net"])]], left=2),
    ])


def _save(config: OptimizeConfig, study: str, result: dict, markdown: str, out) -> None:
    folder = Path(config.output) / config.task / "diagnose"
    write_json(folder / f"{study}.json", result)
    write_text_atomic(folder / f"{study}.md", markdown + "\n")
    out(markdown)
    out(f"\nwritten: {folder / f'{study}.json'} and {study}.md")
