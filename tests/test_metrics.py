"""Any metric: errors from the metric's own threshold, and a test comparison that re-aggregates as the task
does. Expected values come from sacrebleu directly, from lm-eval's results JSON, or by hand.

Fast tests build the tasks through lm-eval without a model; the slow one evaluates two prompts on a BLEU
task of local data (tests/data/past_tense) with the embedded target through lm-eval."""

import itertools
import json
import random
from pathlib import Path

import pytest
import sacrebleu
from conftest import write_user_task
from fakeserver import FakeServer

from lm_eval_abo.artifact.prompt import Demonstration, Prompt
from lm_eval_abo.config import OptimizeConfig
from lm_eval_abo.infra import stats
from lm_eval_abo.infra.errors import AboError
from lm_eval_abo.run import evaluation
from lm_eval_abo.run.optimize import optimize
from lm_eval_abo.run.session import attach_target, plan_session

PAST_TENSE = Path(__file__).parent / "data" / "past_tense"
REFS = ["The dog ran to the park.", "She wrote a long letter to her friend.", "We ate dinner at seven.",
        "The children played in the garden.", "He drove his old car to work."]
WEAK = ["The dog runs to a park.", "She writes a letter.", "We ate dinner at seven.", "Children play.", "He drove."]
STRONG = ["The dog ran to the park.", "She wrote a long letter to a friend.", "We eat dinner at seven.",
          "The children played in the garden.", "He drove his car to work."]


def measure(task="past_tense", include=PAST_TENSE, **settings):
    config = OptimizeConfig(task=task, include_path=[str(include)], train_limit=4, dev_limit=2, test_limit=4, **settings)
    return plan_session(config.resolved()).bridge.measure


def corpus_bleu(preds: list[str], refs: list[str]) -> float:
    return sacrebleu.corpus_bleu(preds, [refs]).score


# --- what counts as an error ---------------------------------------------------------------------


def test_graded_metrics_have_a_default_threshold_on_their_own_scale_and_direction():
    bleu = measure()
    assert (bleu.key, bleu.threshold, bleu.higher_is_better, bleu.graded) == ("bleu,none", 50.0, True, True)
    assert not bleu.correct(49.9) and bleu.correct(50.0) and bleu.correct(100.0)
    ter = measure(metric="ter")
    assert (ter.threshold, ter.higher_is_better) == (50.0, False), "lm-eval's higher_is_better: TER is lower-is-better"
    assert ter.correct(20.0) and ter.correct(50.0) and not ter.correct(50.1)
    assert ter.describe() == "ter,none: graded, scale 0-100+, lower is better, an error is above 50 (--error-threshold)"


def test_the_error_threshold_setting_replaces_the_default(tmp_path):
    bleu = measure(error_threshold=80.0)
    assert bleu.threshold == 80.0 and not bleu.correct(79.0) and bleu.correct(80.0)
    exact = measure("my_arith", write_user_task(tmp_path / "tasks"))
    assert (exact.threshold, exact.graded) == (1.0, False), "exact match: any miss is an error"
    assert exact.correct(1.0) and not exact.correct(0.0)
    with pytest.raises(AboError, match="--error-threshold must be a finite number, got nan"):
        measure(error_threshold=float("nan"))


def test_a_metric_without_a_default_that_is_not_0_1_says_to_set_the_threshold_once(caplog):
    from lm_eval.api.metrics import mean

    from lm_eval_abo.tasks.metrics import Metric

    own = Metric("similarity", "none", True, mean, 1.0, graded=False)
    assert [own.correct(v) for v in (1.0, 0.0, 0.4, 0.7)] == [True, False, False, False]
    warned = [r.getMessage() for r in caplog.records if "--error-threshold" in r.getMessage()]
    assert warned == ["metric similarity is not 0/1 (an example scored 0.4) and has no default error threshold: "
                      "below 1 counts as an error; set --error-threshold on the metric's scale"]


def test_an_examples_value_is_its_sentence_bleu_and_a_classification_pair_is_right_when_it_agrees():
    bleu = measure()
    for ref, pred in zip(REFS, WEAK):
        assert bleu.value((ref, pred)) == pytest.approx(sacrebleu.corpus_bleu([pred], [[ref]]).score)
    assert bleu.value(("We ate dinner at seven.", "We ate dinner at seven.")) == pytest.approx(100.0)

    from lm_eval.api.metrics import f1_score

    f1 = replace_aggregation(bleu, f1_score)
    assert [f1.value(pair) for pair in [(1, 1), (0, 0), (0, 1), (1, 0)]] == [1.0, 1.0, 0.0, 0.0]


def replace_aggregation(metric, aggregation):
    from dataclasses import replace

    return replace(metric, aggregation=aggregation)


# --- the comparison re-aggregates --------------------------------------------------------------------


def test_the_difference_of_a_corpus_metric_is_the_difference_of_the_corpus_scores():
    bleu = measure()
    a = {i: (ref, pred) for i, (ref, pred) in enumerate(zip(REFS, WEAK))}
    b = {i: (ref, pred) for i, (ref, pred) in enumerate(zip(REFS, STRONG))}
    c = stats.compare(a, b, seed=7, aggregate=bleu.aggregate)
    expected = corpus_bleu(STRONG, REFS) - corpus_bleu(WEAK, REFS)
    assert c.baseline == pytest.approx(corpus_bleu(WEAK, REFS)) and c.new == pytest.approx(corpus_bleu(STRONG, REFS))
    assert c.difference == pytest.approx(expected)
    mean_of_sentences = sum(sacrebleu.corpus_bleu([y], [[r]]).score - sacrebleu.corpus_bleu([x], [[r]]).score
                            for r, x, y in zip(REFS, WEAK, STRONG)) / len(REFS)
    assert abs(mean_of_sentences - expected) > 1, "the mean of sentence scores would differ: the test tells them apart"
    assert c.mcnemar_p is None and c.fixed == c.broken == [], "a graded metric: no McNemar, no 0/1 fixed or broken"


def test_the_bootstrap_resamples_documents_and_re_aggregates_each_resample():
    bleu = measure()
    a = {i: (ref, pred) for i, (ref, pred) in enumerate(zip(REFS, WEAK))}
    b = {i: (ref, pred) for i, (ref, pred) in enumerate(zip(REFS, STRONG))}
    lo, hi = stats.compare(a, b, seed=3, aggregate=bleu.aggregate).interval
    # the same resamples of documents (the seeded draws the docstring names), each scored by sacrebleu itself
    rng, n = random.Random(3), len(REFS)
    gaps = []
    for _ in range(stats.CORPUS_BOOTSTRAP):
        picks = [rng.randrange(n) for _ in range(n)]
        refs = [REFS[i] for i in picks]
        gaps.append(corpus_bleu([STRONG[i] for i in picks], refs) - corpus_bleu([WEAK[i] for i in picks], refs))
    gaps.sort()
    assert (lo, hi) == (pytest.approx(gaps[25]), pytest.approx(gaps[975]))


def test_graded_metrics_get_a_paired_permutation_test_and_0_1_metrics_mcnemar():
    # every example better under b: of the 8 ways to swap 3 pairs, only "none" and "all" reach |difference|
    graded = stats.compare({0: 0.2, 1: 0.4, 2: 0.1}, {0: 0.5, 1: 0.9, 2: 0.3})
    assert graded.permutation_p == pytest.approx(2 / 8) and graded.mcnemar_p is None
    assert graded.difference == pytest.approx((0.3 + 0.5 + 0.2) / 3)
    assert "paired permutation p=0.25" in graded.verdict() and not graded.significant
    binary = stats.compare({0: 0, 1: 0, 2: 1}, {0: 1, 1: 1, 2: 1})
    assert binary.mcnemar_p == pytest.approx(stats.mcnemar_exact(0, 2)) and binary.permutation_p is None
    assert binary.fixed == [0, 1], "a 0/1 metric without correctness given: its values say it"

    bleu = measure()
    a = {i: (ref, pred) for i, (ref, pred) in enumerate(zip(REFS[:3], WEAK[:3]))}
    b = {i: (ref, pred) for i, (ref, pred) in enumerate(zip(REFS[:3], STRONG[:3]))}
    observed = abs(corpus_bleu(STRONG[:3], REFS[:3]) - corpus_bleu(WEAK[:3], REFS[:3]))
    extreme = 0
    for swaps in itertools.product((False, True), repeat=3):  # every assignment, scored by sacrebleu
        xs = [STRONG[i] if s else WEAK[i] for i, s in enumerate(swaps)]
        ys = [WEAK[i] if s else STRONG[i] for i, s in enumerate(swaps)]
        extreme += abs(corpus_bleu(ys, REFS[:3]) - corpus_bleu(xs, REFS[:3])) >= observed - 1e-9
    assert stats.compare(a, b, aggregate=bleu.aggregate).permutation_p == pytest.approx(extreme / 8)


# --- a whole run, a stand-in target -----------------------------------------------------------------


def half_tense_lm():
    """A stand-in target: the whole gold sentence under an optimized instruction (the fake optimizer's have
    a hash in brackets), its first half under the task's own prompt."""
    import re

    from lm_eval.api.model import LM

    class HalfLM(LM):
        def generate_until(self, requests, disable_tqdm=False):
            words = [r.doc["past"].split() for r in requests]
            return [" " + " ".join(w if re.search(r"\([0-9a-f]{6}\)", r.args[0]) else w[: len(w) // 2])
                    for r, w in zip(requests, words)]

        def loglikelihood(self, requests, disable_tqdm=False):
            raise NotImplementedError

        def loglikelihood_rolling(self, requests, disable_tqdm=False):
            raise NotImplementedError

    return HalfLM()


def test_a_runs_verdict_on_bleu_is_the_difference_of_lm_evals_scores_and_its_fixed_docs_cross_the_threshold(tmp_path):
    with FakeServer() as server:
        config = OptimizeConfig(task="past_tense", include_path=[str(PAST_TENSE)], output=str(tmp_path / "runs"),
                                optimizer="openai/fake", optimizer_args={"api_base": server.base_url, "api_key": "x"},
                                optimizer_cache=None, method="ape", method_args={"paraphrases": 1}, rounds=0, beam=1,
                                train_limit=4, dev_limit=3, test_limit=10, minibatch=2, error_threshold=20.0)
        outcome = optimize(config, out=lambda line: None, lm=half_tense_lm())
    scores = outcome.artifact_data.scores
    reported = {side: json.loads((outcome.run_dir / scores[side]["results_file"]).read_text())["results"]["past_tense"]
                for side in ("baseline_test", "test")}
    comparison = scores["test_comparison"]
    assert comparison["difference"] == pytest.approx(reported["test"]["bleu,none"] - reported["baseline_test"]["bleu,none"])
    assert comparison["difference"] > 0 and comparison["mcnemar_p"] is None and comparison["permutation_p"] is not None
    halves = {}
    for line in next((outcome.run_dir / "results" / "baseline").rglob("samples_past_tense_*.jsonl")).read_text().splitlines():
        row = json.loads(line)
        halves[row["doc"]["past"]] = sacrebleu.corpus_bleu([row["filtered_resps"][0]], [[row["target"]]]).score
    test_ids = outcome.artifact_data.splits["test"]
    expected = [test_ids[i] for i, doc in enumerate(sorted_test_docs(outcome)) if halves[doc["past"]] < 20.0]
    assert sorted(comparison["fixed"]) == sorted(expected), "fixed: below 20 under the baseline, 100 after"
    assert 0 < len(expected) < len(test_ids), "some half sentences reach 20 (sentence BLEU 28.65): not errors"
    assert outcome.artifact_data.settings["errors"] == "bleu,none: graded, scale 0-100, an error is below 20 (--error-threshold)"


def sorted_test_docs(outcome):
    config = OptimizeConfig(task="past_tense", include_path=[str(PAST_TENSE)], train_limit=4, dev_limit=3, test_limit=10)
    return plan_session(config.resolved()).bridge.docs("test")


# --- on the embedded target, through lm-eval ------------------------------------------------------------


@pytest.mark.slow
def test_bleu_errors_come_from_the_threshold_and_the_difference_is_lm_evals(tmp_path):
    config = OptimizeConfig(task="past_tense", include_path=[str(PAST_TENSE)], train_limit=4, dev_limit=2,
                            test_limit=8, error_threshold=60.0)
    session = attach_target(plan_session(config.resolved()))
    bridge = session.bridge
    shown = tuple(Demonstration(doc, doc["past"]) for doc in bridge.docs("train")[:2])
    plain = evaluation.evaluate(session, Prompt(), tmp_path / "plain", {})
    demos = evaluation.evaluate(session, Prompt(demonstrations=shown), tmp_path / "demos", {})

    values = []
    for run in (plain, demos):
        rows = [json.loads(line) for line in next(run.results.parent.glob("samples_past_tense_*.jsonl")).read_text().splitlines()]
        by_doc = {r["doc_id"]: r for r in rows if r["filter"] == "none"}
        for i, doc_index in enumerate(bridge.splits.test.indices):
            row = by_doc[doc_index]
            sentence = sacrebleu.corpus_bleu([row["filtered_resps"][0]], [[row["target"]]]).score
            assert run.per_doc[i] == pytest.approx(sentence)
            assert run.correct[i] == (sentence >= 60.0), "an error is an example below --error-threshold"
            values.append(sentence)
    assert any(v < 60.0 for v in values) and any(0.0 < v < 100.0 for v in values), f"graded, some errors: {values}"

    reported = [json.loads(run.results.read_text())["results"]["past_tense"]["bleu,none"] for run in (plain, demos)]
    c = evaluation.compared(plain, demos, seed=1)
    assert (c.baseline, c.new) == (pytest.approx(reported[0]), pytest.approx(reported[1]))
    assert c.difference == pytest.approx(reported[1] - reported[0]), "the difference of lm-eval's two reported scores"
    assert c.permutation_p is not None and c.mcnemar_p is None
    assert c.fixed == [i for i in range(8) if demos.correct[i] and not plain.correct[i]]
