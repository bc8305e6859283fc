"""`lm-eval-abo diagnose reflection`: does the optimizer read the errors it reflects on?

The optimizer reflects (the `apo_gradient` meta-prompt: three reasons why the instruction led to the
errors shown) `samples` times on each set of `sets.py`, at the study temperature (default 1.0; a greedy
optimizer would write one text per set, whatever the seed), each reflection recorded with its seed:
real_a and real_b (two disjoint samples of the prompt's real train errors), wrong_labels (real_a's
examples with wrong correct answers), correct_as_errors, other_task, and planted_cause.

Measure: TF-IDF cosine similarity over words (scikit-learn; lexical, no model download), in ONE vector
space fitted once over every reflection of every set, so all similarities are comparable. real_b is the
reference: a set's similarity is the mean similarity of its reflections to real_b's. The within-real
similarity is real_a's: what reflections on other real errors of the same prompt share. Sensitivity to a
perturbation P = within-real - similarity(P). Both sides are compared with the same real_b, and
wrong_labels shows real_a's own questions and replies, so the difference isolates what P changes.

Noise floor: reflections are samples, so a sensitivity is never exactly 0 even when the optimizer ignores
the errors. If it does (the null hypothesis), which of real_a and P a reflection came from does not matter:
the labels of the pooled reflections are exchangeable, and relabeling them (every split, when there are
at most 10,000) gives the sensitivities sampling alone produces. The floor is their 95th percentile; a
sensitivity above it has a two-sided permutation p-value below 0.05. With s reflections per set the
smallest p-value possible is 2 / C(2s, s): s = 3 can never reach 0.05, s = 4 can (0.029). Reported too:
the draw similarity, among reflections on one set (identical input, independent draws), i.e. how much
sampling alone leaves in common (1.000: the samples are one text).

Planted cause: a reflection names the cause when its text matches the cause's regular expression
(`sets.CAUSES`); the same check on the reflections on real_a and real_b, whose errors have no planted
cause, is the control (how often the check fires anyway). One-sided Fisher exact test of planted > control.
"""

from __future__ import annotations

import itertools
from dataclasses import replace

from lm_eval_abo.artifact.prompt import Prompt
from lm_eval_abo.config import OptimizeConfig
from lm_eval_abo.infra import metaprompts
from lm_eval_abo.infra.errors import AboError
from lm_eval_abo.infra.stats import fisher_greater, permutation_test
from lm_eval_abo.optimizers.base import Context, all_tags
from lm_eval_abo.reports.markdown import fmt, table
from lm_eval_abo.run.session import open_session, resolve_run
from lm_eval_abo.scoring import Sample
from lm_eval_abo.studies import sets
from lm_eval_abo.studies.common import answered_seeds, mean, save, studied_prompt

PERTURBED = ("wrong_labels", "correct_as_errors", "other_task", "planted_cause")
REFERENCE = "real_b"
PURPOSE = "reflections"
OTHER_TASK = {"abo_object_counting_synth": "abo_navigate_synth"}
MEASURE = "TF-IDF cosine similarity over words (scikit-learn), one space fitted over every reflection"


def vector_space(texts: list[str]) -> list[list[float]]:
    """Cosine similarities of all texts in one TF-IDF space fitted once over them all."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.metrics.pairwise import cosine_similarity

    if not texts:
        return []
    try:
        vectors = TfidfVectorizer().fit_transform(texts)
    except ValueError:  # not one word in any text
        return [[0.0] * len(texts) for _ in texts]
    return cosine_similarity(vectors).tolist()


def error_sets(ctx: Context, train: list[Sample], other_errors: list[dict], k: int) -> tuple[str, dict[str, list[dict]]]:
    """The planted cause and every set, each of up to k examples as the optimizer sees them."""
    real_a, real_b = sets.real_halves(ctx, [s for s in train if not s.correct], k)
    shown_a = [ctx.error(s) for s in real_a]
    cause, planted = sets.planted_errors(ctx, train, k)
    return cause, {
        "real_a": shown_a,
        "real_b": [ctx.error(s) for s in real_b],
        "wrong_labels": sets.wrong_labels(ctx, shown_a, [s.target for s in train]),
        "correct_as_errors": sets.correct_as_errors(ctx, train, k),
        "other_task": other_errors[:k],
        "planted_cause": planted,
    }


def ask(ctx: Context, prompt: Prompt, shown: dict[str, list[dict]], samples: int, temperature: float):
    """`samples` reflections on each non-empty set at `temperature`: {set: [{text, seed, temperature}]}, and
    every call made."""
    calls: list[dict] = []
    asking = ctx.recorded(calls.append, sampling_temperature=temperature)
    owners, requests = [], []
    for name, errors in shown.items():
        for _ in range(samples if errors else 0):
            owners.append(name)
            requests.append(("apo_gradient", {"task_description": ctx.task_description,
                                              "instruction": prompt.instruction_block(), "errors": errors, "n": 3}))
    replies = asking.ask(PURPOSE, requests, all_tags("reason"), "reason", sample=True)
    reflections: dict[str, list[dict]] = {name: [] for name in shown}
    for name, reasons, seed in zip(owners, replies, answered_seeds(ctx, PURPOSE, len(requests), calls)):
        if reasons:
            reflections[name].append({"text": " ".join(reasons), "seed": seed, "temperature": temperature})
    return reflections, calls


def compare(sims: list[list[float]], order: list[str], shown: dict[str, list[dict]], seed: int):
    """The within-real similarity, a row per set (similarity to real_b, sensitivity, noise floor, p) and
    the draw similarity of each set, from the one similarity matrix (`order`: each reflection's set)."""
    index = {name: [i for i, owner in enumerate(order) if owner == name] for name in shown}

    def to_reference(i: int) -> float | None:
        return mean(sims[i][j] for j in index[REFERENCE] if j != i)

    def draws(name: str) -> float | None:
        return mean(sims[i][j] for i, j in itertools.combinations(index[name], 2))

    real = [to_reference(i) for i in index["real_a"]]
    within, rows = mean(real), []
    for name in ("real_a", *PERTURBED):
        scores = [to_reference(i) for i in index[name]]
        cross = mean(scores)
        tested = name != "real_a" and within is not None and cross is not None
        floor, p = permutation_test(real, scores, seed=seed) if tested else (None, None)
        rows.append({"set": name, "examples_shown": len(shown[name]), "reflections": len(scores),
                     "draw_similarity": draws(name), "similarity_to_real": cross,
                     "sensitivity": within - cross if tested else None, "noise_floor": floor, "p_value": p})
    return within, rows, {name: draws(name) for name in shown}


def planted_check(cause: str, shown: dict[str, list[dict]], reflections: dict[str, list[dict]]) -> dict:
    """How many reflections on the planted errors name the cause, against the control (real_a, real_b)."""
    named = [sets.names_cause(cause, r["text"]) for r in reflections["planted_cause"]]
    control = [sets.names_cause(cause, r["text"]) for name in ("real_a", "real_b") for r in reflections[name]]
    return {
        "cause": cause, "planted": sets.CAUSES[cause][0], "check": sets.CAUSES[cause][1],
        "examples_shown": len(shown["planted_cause"]), "named": sum(named), "reflections": len(named),
        "rate": mean(named), "control_named": sum(control), "control_reflections": len(control), "control_rate": mean(control),
        "p_value": fisher_greater(sum(named), len(named), sum(control), len(control)), "named_by": named,
    }


def reflect(ctx: Context, prompt: Prompt, train: list[Sample], other_errors: list[dict], samples: int, k: int,
            temperature: float) -> dict:
    """The study on a prompt's scored train examples: the sets, the reflections, the comparisons."""
    cause, shown = error_sets(ctx, train, other_errors, k)
    reflections, calls = ask(ctx, prompt, shown, samples, temperature)
    order = [name for name, found in reflections.items() for _ in found]
    sims = vector_space([r["text"] for found in reflections.values() for r in found])
    within, rows, draws = compare(sims, order, shown, ctx.seed)
    return {
        "measure": MEASURE, "temperature": temperature, "samples": samples, "errors_per_reflection": k,
        "reference": REFERENCE, "within_real_similarity": within, "draw_similarity": draws, "rows": rows,
        "planted": planted_check(cause, shown, reflections), "reflections": reflections, "error_sets": shown,
        "similarities": {"order": order, "matrix": sims},
        "templates": metaprompts.hashes(metaprompts.closure("apo_gradient")), "calls": calls,
    }


def reflection_study(config: OptimizeConfig, artifact: str | None = None, samples: int = 4, k: int = 4,
                     other_task: str | None = None, temperature: float = 1.0, out=print, lm=None) -> dict:
    if samples < 2 or k < 1 or temperature < 0:
        raise AboError(f"diagnose reflection needs --samples of at least 2 (got {samples}), --errors of at least 1 "
                       f"(got {k}) and a --study-temperature of at least 0 (got {temperature})")
    config = resolve_run(config)[0]
    session = open_session(config, lm, reads_text="diagnose reflection")
    ctx = session.context(None)
    prompt = studied_prompt(session, artifact)
    [train] = session.bridge.score([prompt], "train", session.train_pool)
    other_name = other_task or OTHER_TASK.get(config.task) or next(
        (t for t in OTHER_TASK.values() if t != config.task), "abo_object_counting_synth")
    other = open_session(replace(config, task=other_name), lm=session.target.inner)
    [other_train] = other.bridge.score([other.bridge.default_prompt], "train", other.train_pool)
    other_ctx = other.context(None)
    result = {
        "task": config.task, "other_task": other_name, "optimizer": config.optimizer, "prompt_sha256": prompt.sha256(),
        "train_examples": train.n, "train_errors": len(train.errors()), "seed": config.seed,
        **reflect(ctx, prompt, train.samples, [other_ctx.error(s) for s in other_train.errors()], samples, k, temperature),
        "usage": session.ledger.plus(other.ledger).to_dict(),  # the target ran both tasks' train examples
    }
    save(config, "reflection", result, reflection_markdown(result), out)
    return result


def reflection_markdown(r: dict) -> str:
    planted = r["planted"]
    return "\n".join([
        f"# Reflection sensitivity: {r['task']}, optimizer {r['optimizer']}",
        "",
        f"{r['samples']} reflections per set at temperature {r['temperature']:g} (seed {r['seed']}), up to "
        f"{r['errors_per_reflection']} examples each. Measure: {r['measure']}.",
        "Within-real similarity (real_a to real_b, two disjoint samples of the real errors): "
        f"{fmt(r['within_real_similarity'])}.",
        "Sensitivity = within-real minus a set's similarity to real_b. Noise floor: the 95th percentile of the",
        "sensitivities that relabeling the pooled real_a and perturbed reflections gives; above it, p < 0.05.",
        "Draw similarity: among reflections on the same set (independent draws; 1.000 = one text).",
        "",
        *table(["set", "examples shown", "reflections", "draw similarity", "similarity to real_b", "sensitivity",
                "noise floor", "p"],
               [[x["set"], x["examples_shown"], x["reflections"], fmt(x["draw_similarity"]), fmt(x["similarity_to_real"]),
                 fmt(x["sensitivity"]), fmt(x["noise_floor"]), fmt(x["p_value"])] for x in r["rows"]]),
        "",
        f"## Planted cause: {planted['cause']}",
        "",
        f"Planted: {planted['planted']}; {planted['examples_shown']} examples shown.",
        f"Named by {planted['named']} of {planted['reflections']} reflections on the planted errors ({fmt(planted['rate'])}); "
        f"control, on the real errors: {planted['control_named']} of {planted['control_reflections']} "
        f"({fmt(planted['control_rate'])}). One-sided Fisher exact p = {fmt(planted['p_value'])}.",
        f"Lexical check (case-insensitive regular expression): `{planted['check']}`",
    ])
