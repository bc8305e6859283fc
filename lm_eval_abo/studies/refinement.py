"""`lm-eval-abo diagnose refinement`: does one refinement step change what the target does?

One round of the method (`--method`, default apo) refines the studied prompt from its errors on a train
minibatch. The refinements are the round's reflection-derived children only: a child whose origin is a
paraphrase (APO's Monte Carlo successors, of an edit or of the parent) is resampling, not refinement, and
is left out (counted in `left_out`). Beside them, two controls written with the `paraphrase` meta-prompt
(an instruction reworded, the rest of the prompt kept):

- resampling around each refinement (`around_refinement`): one paraphrase of each refinement, the paper's
  APO-step-k-APE as this project reads it ("fail to generate maximally suitable prompts in the altered
  semantic space");
- resampling from the parent (`from_parent`): as many paraphrases of the parent as there are refinements.

Every candidate is scored on the same dev examples as the parent, through lm-eval:

- against the parent: the difference in dev score with a paired bootstrap 95% interval; fixed / broken:
  the parent's errors now right / its right answers now errors; fix rate, break rate, net change; McNemar
  p: the exact two-sided McNemar test on (broken, fixed), the discordant pairs.
- a paraphrase around a refinement, against that refinement: the difference (refinement minus paraphrase),
  its interval and McNemar p.
- per kind, against the parent and against the refinements: per dev example the mean score over the kind's
  prompts; the mean difference with a paired bootstrap 95% interval and the two-sided exact sign test.
- changed: the share of dev examples whose reply differs from the parent's (the target decodes as the
  task says, greedily for the bundled tasks, so a different reply is the prompt's doing).
- answered: the share of replies from which the task's filter extracts an answer (it differs from what
  the filter makes of an empty reply): the answer form every prompt asks for.
- followed: whether the replies show the candidate's new guidance. A prompt with a numbered procedure:
  per step, the share of replies that label it ("Step N:"; the answer prefix counts); a step whose text
  is not among the parent's steps is new, and a reply follows the new guidance when it labels every new
  step. Otherwise (or when no step is new): the new terms, content words (4+ letters, no function words)
  of the candidate's instruction that the parent's lacks; a reply follows when it uses one that is in
  neither the question nor the parent's reply to the same example. That is a lexical proxy: it misses
  guidance followed in other words and counts a word used for another reason; the controls' rates are
  its base rate.
"""

from __future__ import annotations

import re

from lm_eval_abo.artifact.prompt import Prompt
from lm_eval_abo.config import OptimizeConfig
from lm_eval_abo.infra import stats
from lm_eval_abo.infra.errors import AboError
from lm_eval_abo.optimizers.base import Candidate, Context, Node, Round
from lm_eval_abo.optimizers.instructions import PARAPHRASE, paraphrases
from lm_eval_abo.reports.markdown import fmt, table
from lm_eval_abo.run.session import open_session, resolve_run
from lm_eval_abo.scoring import Sample, Score
from lm_eval_abo.studies.common import mean, save, studied_prompt
from lm_eval_abo.studies.sets import same_answer

KINDS = ("refinement", "around_refinement", "from_parent")
CONTROLS = {"around_refinement": "resampling around each refinement (APO-step-k-APE)",
            "from_parent": "resampling from the parent"}
FUNCTION_WORDS = frozenset("""
about above after again against also because been before being below between both could does doing down during
each every from further have having here into itself just more most must only other over same should some such
than that their them then there these they this those through under until very what when where which while will
with would your yours make sure""".split())


def content_words(text: str) -> set[str]:
    return {w for w in re.findall(r"[a-z]{4,}", text.lower()) if w not in FUNCTION_WORDS}


def labels_step(prompt: Prompt, reply: str, n: int) -> bool:
    """Whether a reply (after the prompt's answer prefix) labels step n."""
    return re.search(rf"\bstep\s*{n}\s*[:.)]", f"{prompt.answer_prefix} {reply}", flags=re.IGNORECASE) is not None


def share(flags) -> float | None:
    flags = list(flags)
    return sum(flags) / len(flags) if flags else None


def guidance(ctx: Context, parent: Prompt, candidate: Prompt, old: dict[int, Sample], new: dict[int, Sample]) -> dict:
    """The check of whether the replies under `candidate` show its new guidance (see the module's doc)."""
    found: dict = {"check": None, "followed": None}
    if candidate.procedure:
        new_steps = [n for n, step in enumerate(candidate.procedure, 1) if step not in parent.procedure]
        found["steps"] = [
            {"step": n, "new": n in new_steps, "labelled": share(labels_step(candidate, s.output, n) for s in new.values()),
             "text": step} for n, step in enumerate(candidate.procedure, 1)
        ]
        if new_steps:
            found["check"] = "step labels"
            found["followed"] = share(all(labels_step(candidate, s.output, n) for n in new_steps) for s in new.values())
    terms = content_words(candidate.instruction_block()) - content_words(parent.instruction_block())
    found["terms"] = sorted(terms)
    if terms and found["check"] is None:
        found["check"] = "new terms"
        found["followed"] = share(
            bool(terms & (content_words(s.output) - content_words(ctx.task.question(s.doc)) - content_words(old[i].output)))
            for i, s in new.items()
        )
    return found


def paired(a: dict[int, float], b: dict[int, float]) -> dict:
    """b against a on the same examples: mean(b - a), its paired bootstrap 95% interval, the two-sided exact
    sign test."""
    xs, ys = [a[i] for i in sorted(a)], [b[i] for i in sorted(a)]
    p = min(1.0, 2 * min(stats.sign_test(xs, ys), stats.sign_test(ys, xs)))
    return {"difference": (sum(ys) - sum(xs)) / len(xs), "interval": list(stats.paired_interval(xs, ys)), "sign_p": p}


def versus(a: Score, b: Score) -> dict:
    """Prompt b against prompt a on the same examples (`stats.compare`): difference, interval, McNemar p."""
    found = stats.compare({s.index: s.score for s in a.samples}, {s.index: s.score for s in b.samples},
                          {s.index: s.correct for s in a.samples}, {s.index: s.correct for s in b.samples})
    return {k: v for k, v in found.to_dict().items() if k in ("difference", "interval", "mcnemar_p", "significant")}


def row(ctx: Context, kind: str, candidate: Candidate, score: Score, parent: Prompt, dev: Score,
        empty: dict[int, str]) -> dict:
    old = {s.index: s for s in dev.samples}
    new = {s.index: s for s in score.samples}
    fixed = [i for i in old if not old[i].correct and new[i].correct]
    broken = [i for i in old if old[i].correct and not new[i].correct]
    wrong = sum(not s.correct for s in old.values())
    found = guidance(ctx, parent, candidate.prompt, old, new)
    return {
        "kind": kind, "candidate": candidate.key[:12], "key": candidate.key, "origin": candidate.origin,
        "source": candidate.parent, "dev": score.value, "vs_parent": versus(dev, score),
        "fixed": len(fixed), "broken": len(broken), "fix_rate": len(fixed) / wrong if wrong else None,
        "break_rate": len(broken) / (len(old) - wrong) if len(old) > wrong else None,
        "net": (len(fixed) - len(broken)) / len(old), "mcnemar_p": stats.mcnemar_exact(len(broken), len(fixed)),
        "changed": share(new[i].output != old[i].output for i in old),
        "answered": share(not same_answer(s.answer, empty[i]) for i, s in new.items()),
        "followed": found.pop("followed"), "check": found.pop("check"), "guidance": found,
        "fixed_examples": fixed, "broken_examples": broken, "prompt": candidate.prompt.to_dict(), "notes": candidate.notes,
    }


def kind_means(rows: list[dict], scores: list[Score], dev: Score) -> dict:
    """Per kind: per dev example the mean score over the kind's prompts, against the parent and (the controls)
    against the refinements (`paired`)."""
    parent = {s.index: s.score for s in dev.samples}
    members = {kind: [{x.index: x.score for x in score.samples} for r, score in zip(rows, scores) if r["kind"] == kind]
               for kind in KINDS}
    per = {kind: {i: mean(m[i] for m in ms) for i in parent} for kind, ms in members.items() if ms}
    out = {}
    for kind, values in per.items():
        out[kind] = {"members": sum(r["kind"] == kind for r in rows), "dev": mean(values.values()),
                     "vs_parent": paired(parent, values)}
        if kind != "refinement" and "refinement" in per:
            out[kind]["refinements_vs_control"] = paired(values, per["refinement"])
    return out


def distinct(candidates: list[Candidate], known: set[str]) -> list[Candidate]:
    """The candidates that are neither a prompt in `known` nor a repeat of an earlier one."""
    found: dict[str, Candidate] = {}
    for c in candidates:
        if c.key not in known:
            found.setdefault(c.key, c)
    return list(found.values())


def refine(ctx: Context, method, prompt: Prompt, dev: Score, train: Score) -> dict:
    """One refinement step of `method` on `prompt` (its dev and train-minibatch scores), the two resampling
    controls, every candidate scored on the same dev examples, and the comparisons."""
    calls: list[dict] = []
    ctx = ctx.recorded(calls.append)
    node = Node(Candidate(prompt, "studied"), 0, dev.value, dev.stderr, dev.n, {s.index: s.score for s in dev.samples})
    proposal = method.propose(ctx, Round(1, [node], [node], {node.key: train.samples}))
    children = [c for c in proposal.candidates if c.key != node.key]
    refinements = distinct([c for c in children if c.origin != PARAPHRASE], {node.key})
    if not refinements:
        raise AboError(f"{method.name} proposed no refinement (no train errors, or no usable optimizer reply)")
    known = {node.key} | {c.key for c in refinements}
    around = distinct(paraphrases(ctx, "control: around each refinement", [(c, 1) for c in refinements]), known)
    from_parent = distinct(paraphrases(ctx, "control: from the parent", [(node, len(refinements))]), known)
    candidates = [("refinement", c) for c in refinements] + [("around_refinement", c) for c in around] + \
                 [("from_parent", c) for c in from_parent]
    scores = ctx.task.score([c.prompt for _, c in candidates], "dev", [s.index for s in dev.samples])
    blank = ctx.task.check([""] * dev.n, [s.doc for s in dev.samples])  # what the filter makes of no reply
    empty = {s.index: answer for s, (answer, _) in zip(dev.samples, blank)}
    rows = [row(ctx, kind, c, score, prompt, dev, empty) for (kind, c), score in zip(candidates, scores)]
    by_key = {c.key: score for (_, c), score in zip(candidates, scores)}
    for r in rows:
        if r["kind"] == "around_refinement":
            r["refinement_vs_this"] = versus(by_key[r["key"]], by_key[r["source"]])
    parent = {
        "dev": dev.value, "n": dev.n, "errors": sum(not s.correct for s in dev.samples),
        "answered": share(not same_answer(s.answer, empty[s.index]) for s in dev.samples),
        "steps": [share(labels_step(prompt, s.output, n) for s in dev.samples) for n in range(1, len(prompt.procedure) + 1)],
    }
    means = {kind: {key: mean(r[key] for r in rows if r["kind"] == kind)
                    for key in ("fix_rate", "break_rate", "net", "changed", "answered", "followed")} for kind in KINDS}
    left_out = {"paraphrases of the parent": sum(c.parent == node.key for c in children if c.origin == PARAPHRASE),
                "paraphrases of refinements": sum(c.parent != node.key for c in children if c.origin == PARAPHRASE)}
    return {"parent": parent, "rows": rows, "mean": means, "kinds": kind_means(rows, scores, dev),
            "left_out": left_out, "calls": calls}


def refinement_study(config: OptimizeConfig, artifact: str | None = None, out=print, lm=None) -> dict:
    config, method, params = resolve_run(config)
    session = open_session(config, lm, reads_text="diagnose refinement")
    ctx = session.context(params)
    prompt = studied_prompt(session, artifact)
    [dev] = session.bridge.score([prompt], "dev", session.dev_indices)
    batch = ctx.rng("minibatch", 1).sample(session.train_pool, min(config.minibatch, len(session.train_pool)))
    [train] = session.bridge.score([prompt], "train", batch)
    result = {
        "task": config.task, "method": config.method, "method_args": config.method_args, "optimizer": config.optimizer,
        "prompt_sha256": prompt.sha256(), "seed": config.seed, "sampling_temperature": config.sampling_temperature,
        "minibatch": sorted(batch), **refine(ctx, method, prompt, dev, train),
        "usage": session.ledger.to_dict(),
    }
    save(config, "refinement", result, refinement_markdown(result), out)
    return result


def interval(found: dict) -> str:
    lo, hi = found["interval"]
    return f"{found['difference']:+.3f} ({lo:+.3f} to {hi:+.3f})"


def refinement_markdown(r: dict) -> str:
    parent, rows = r["parent"], r["rows"]
    short = {x["key"]: x["candidate"] for x in rows}
    cells = [[x["kind"], x["candidate"], x["origin"], short.get(x["source"], "parent"), fmt(x["dev"]),
              interval(x["vs_parent"]), x["fixed"], x["broken"], fmt(x["fix_rate"]), fmt(x["break_rate"]), fmt(x["net"]),
              fmt(x["mcnemar_p"]), fmt(x["changed"]), fmt(x["answered"]),
              f"{fmt(x['followed'])} ({x['check'] or 'nothing new'})"] for x in rows]
    cells += [[f"mean {kind}", "", "", "", "", "", "", "", fmt(m["fix_rate"]), fmt(m["break_rate"]), fmt(m["net"]), "",
               fmt(m["changed"]), fmt(m["answered"]), fmt(m["followed"])] for kind, m in r["mean"].items()]
    kinds = [[kind, k["members"], fmt(k["dev"]), interval(k["vs_parent"]), fmt(k["vs_parent"]["sign_p"]),
              *((interval(k["refinements_vs_control"]), fmt(k["refinements_vs_control"]["sign_p"]))
                if "refinements_vs_control" in k else ("", ""))] for kind, k in r["kinds"].items()]
    pairs = [[short[x["source"]], x["candidate"], interval(x["refinement_vs_this"]), fmt(x["refinement_vs_this"]["mcnemar_p"])]
             for x in rows if x["kind"] == "around_refinement"]
    steps = [[x["candidate"], s["step"], "yes" if s["new"] else "", fmt(s["labelled"]), s["text"][:80]]
             for x in rows for s in x["guidance"].get("steps", [])]
    left = ", ".join(f"{n} {what}" for what, n in r["left_out"].items())
    lines = [
        f"# One refinement step: {r['task']}, {r['method']}, optimizer {r['optimizer']}",
        "",
        f"Prompt refined: dev {fmt(parent['dev'])} on {parent['n']} examples ({parent['errors']} errors); replies with an "
        f"answer the task's filter extracts: {fmt(parent['answered'])}.",
        f"Refinements: the reflection-derived children of one {r['method']} round on {len(r['minibatch'])} train "
        f"examples (left out as resampling: {left}). Controls: {CONTROLS['around_refinement']}, one paraphrase of "
        f"each refinement; {CONTROLS['from_parent']}, as many paraphrases of the parent as refinements. "
        f"Sampling temperature {r['sampling_temperature']:g}, seed {r['seed']}.",
        "Against the parent: the difference in dev score (paired bootstrap 95% interval). McNemar p: exact, two-sided, on "
        "the fixed and broken examples. Changed: replies that differ from the parent's. Followed: replies that show the "
        "new guidance (step labels, or new terms).",
        "",
        *table(["kind", "candidate", "origin", "from", "dev", "vs parent (95% CI)", "fixed", "broken", "fix rate",
                "break rate", "net", "McNemar p", "changed", "answered", "followed (check)"], cells, left=4),
        "",
        "## Each kind against the parent and the refinements against each control",
        "",
        "Per dev example the mean score over a kind's prompts; the mean difference with a paired bootstrap 95% "
        "interval and the two-sided exact sign test.",
        "",
        *table(["kind", "prompts", "mean dev", "vs parent (95% CI)", "sign p", "refinements - control (95% CI)",
                "sign p"], kinds, left=1),
    ]
    if pairs:
        lines += ["", "## Each refinement against its paraphrase", "",
                  *table(["refinement", "paraphrase", "refinement - paraphrase (95% CI)", "McNemar p"], pairs, left=2)]
    if steps:
        labelled = ", ".join(f"step {n}: {fmt(v)}" for n, v in enumerate(parent["steps"], 1)) or "no procedure"
        lines += ["", "## Steps: share of replies that label each step", "", f"Parent: {labelled}.", "",
                  *table(["candidate", "step", "new", "labelled", "text"], steps, left=1)]
    return "\n".join(lines)
