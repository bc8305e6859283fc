"""The bridge to lm-eval: everything the optimizers know about a task comes through here.

Candidate prompts are scored by lm-eval itself: each candidate is the task's own config with the prompt
in lm-eval's fields (`tasks.fields`), so the task's filters, metrics and generation settings apply; all
candidates of a call go to the model in one `evaluate` pass, and per-example results come from lm-eval's
sample logs. A split's score is the task's own aggregation of the per-example metric values. An identical
(prompt, split, example) is scored at most once per run.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from lm_eval_abo.artifact.prompt import Prompt
from lm_eval_abo.cost.ledger import Budget
from lm_eval_abo.cost.target import CountingLM, target_calls
from lm_eval_abo.tasks import fields
from lm_eval_abo.tasks.built import Harness, gold, physical_docs, question, quiet_lm_eval, set_up
from lm_eval_abo.tasks.metrics import Metric
from lm_eval_abo.tasks.splits import Splits, doc_id

OUTPUT_TYPES = ("generate_until", "multiple_choice")
# Endings that make a worked answer's last line extractable, tried on the task's own filter and metric
# when the task does not say how an answer must end.
ANSWER_PHRASINGS = ("So the answer is {}.", "The answer is {}.", "#### {}", "Answer: {}", "The final answer is {}.")


@dataclass(frozen=True)
class Sample:
    """One example as the target saw and answered it."""

    index: int  # position in its logical split
    id: str  # the document's id (`splits.doc_id`)
    doc: dict
    prompt: str  # the full text lm-eval sent to the target
    output: str  # the raw reply (for multiple choice: the option the target ranked first)
    answer: str  # the reply after the task's filter
    target: str  # the gold answer
    score: float  # the task's metric for this example
    correct: bool  # not an error: the score reaches the error threshold
    model: str = ""  # the label of the target that answered, in a run with several targets

    @property
    def key(self) -> int | str:
        """What pairs this sample with another prompt's (`pair_key`)."""
        return pair_key(self.index, self.model)


def pair_key(index: int, model: str = "") -> int | str:
    """The key that pairs per-example results across prompts: the example, and, in a run with several targets,
    the model that answered it ("label:index")."""
    return f"{model}:{index}" if model else index


@dataclass
class Score:
    value: float
    stderr: float | None
    n: int  # examples scored (each by every target, in a run with several)
    samples: list[Sample] = field(default_factory=list)
    per_model: dict[str, Score] = field(default_factory=dict)  # by target label, in a run with several targets

    def errors(self) -> list[Sample]:
        return [s for s in self.samples if not s.correct]


def _first(filtered) -> str:
    """A filtered response: filters such as take_first leave a string, others a list."""
    return str(filtered[0] if isinstance(filtered, (list, tuple)) else filtered)


class Bridge:
    """One task, the target model once attached, and the settings every scoring call shares. It is the
    `TaskView` the methods see, and more: what the loop, the test evaluation and the export need."""

    def __init__(self, target: CountingLM | None, task, base_config: dict, splits: Splits, manager,
                 harness: Harness | None = None, default_prompt: Prompt | None = None,
                 metric: str | None = None, answer_format: str | None = None, quiet: bool = True,
                 error_threshold: float | None = None):
        """`target`: the model (None: a bridge that knows the task and scores nothing until one is attached);
        `task`: the task as lm-eval builds it (the reference: its documents, filters, metrics);
        `base_config`: its config, which candidate configs copy; `default_prompt`: the baseline;
        `metric`, `error_threshold`: which metric, and below what an example is an error (`tasks.metrics`)."""
        self.harness = harness or Harness()
        self.counter = self.model = None
        self.budget: Budget | None = None  # the run's caps, checked before each pass of the search
        if target is not None:
            self.attach(target)
        self.task = task.config.task
        self.reference = task
        self.base_config = base_config
        self.splits = splits
        self.manager = manager
        self.default_prompt = default_prompt or Prompt()
        self.quiet = quiet
        self.output_type = task.OUTPUT_TYPE
        self.measure = Metric.of(task, metric, error_threshold)
        self.metric, self.filter_name = self.measure.name, self.measure.filter_name
        self.higher_is_better = self.measure.higher_is_better
        self.threshold = self.measure.threshold  # below it (above, for lower-is-better), an error
        self._answer_format = answer_format
        self._docs: dict[str, list[dict]] = {}
        self._memo: dict[tuple[str, str, int], tuple[Sample, object]] = {}
        self.target_seconds = 0.0  # wall time spent scoring: task builds and lm-eval passes
        set_up(task, self.harness)

    def attach(self, target: CountingLM, budget: Budget | None = None) -> None:
        """The target model to score with (under lm-eval's cache, if the harness names one), and the caps."""
        from lm_eval.api.model import CachingLM

        self.counter, self.budget = target, budget
        self.model = CachingLM(target, f"{self.harness.use_cache}_rank0.db") if self.harness.use_cache else target

    # --- what the optimizers may know about the task ---

    @property
    def metric_key(self) -> str:
        return f"{self.metric},{self.filter_name}"

    def docs(self, split: str) -> list[dict]:
        """The documents of a logical split (train, dev or test), in order."""
        part = self.splits[split]
        if part.split not in self._docs:
            self._docs[part.split] = list(physical_docs(self.reference, part.split))
        return [self._docs[part.split][i] for i in part.indices]

    def gold(self, doc: dict) -> str:
        """A document's gold answer as text."""
        return gold(self.reference, doc)

    def question(self, doc: dict) -> str:
        """A document's question as the target sees it, without any prompt parts."""
        return question(self.reference, doc)

    @property
    def task_description(self) -> str:
        """What the task is, for the meta-prompts: the baseline's instruction, else the task's description."""
        if self.default_prompt.instruction:
            return self.default_prompt.instruction
        description = self.reference.config.description
        if isinstance(description, str) and description.strip() and "{" not in description:
            return description.strip()
        return f"Questions of the lm-eval task {self.task}."

    @property
    def answer_format(self) -> str:
        """How an answer must end so the task's filter finds it: given, the baseline's, or found by trying
        phrasings of the gold answers of a few training examples on the task's own filter and metric."""
        if self._answer_format is None:
            self._answer_format = self.default_prompt.answer_format or self._found_answer_format()
        return self._answer_format

    def _found_answer_format(self) -> str:
        docs = self.docs("train")[:8]
        asks_model = getattr(self.reference.config.process_results, "grades_with_model", None)
        if self.output_type != "generate_until" or (callable(asks_model) and asks_model(docs)):
            return ""  # a metric that asks a model (a grader) is not probed with made-up replies
        for phrasing in ANSWER_PHRASINGS:
            texts = [f"Working through the question step by step.\n{phrasing.format(self.gold(d))}" for d in docs]
            if all(self.correct(score) for _, score in self.check(texts, docs)):
                return f'End your answer with "{phrasing.format("<answer>")}".'
        return ""

    def check(self, outputs: list[str], docs: list[dict], metric: bool = True) -> list[tuple[str, float]]:
        """The task's own filter and metric applied to replies written elsewhere (e.g. by the
        optimizer for a demonstration): (extracted answer, metric value) per reply; without `metric`, the
        answers only (the value 0.0: a metric that asks a grader model is not asked)."""
        from lm_eval.api.instance import Instance

        instances = []
        for i, (text, doc) in enumerate(zip(outputs, docs)):
            inst = Instance("generate_until", doc, ("", {}), idx=0, metadata=(self.task, i, 1))
            inst.resps = [text]
            instances.append(inst)
        for f in self.reference._filters:  # the task's built filter ensembles (lm-eval has no public accessor)
            if f.name == self.filter_name:
                f.apply(instances)
        results = []
        for inst, doc in zip(instances, docs):
            answer = inst.filtered_resps[self.filter_name]
            value = self.measure.value(self.reference.process_results(doc, [answer])[self.metric]) if metric else 0.0
            results.append((_first(answer), value))
        return results

    def unread(self, samples: list[Sample]) -> list[bool]:
        """Whether the task's filter read no answer from each reply: what it read is what it makes of an
        empty reply (a regex filter's fallback). A multiple-choice reply always names an option."""
        if self.output_type != "generate_until" or not samples:
            return [False] * len(samples)
        empty = self.check([""] * len(samples), [s.doc for s in samples], metric=False)
        return [s.answer.strip() == blank.strip() for s, (blank, _) in zip(samples, empty)]

    # --- scoring ---

    def score(self, prompts: list[Prompt], split: str, indices: list[int], capped: bool = True) -> list[Score]:
        """Score each prompt on the given examples of a logical split, all in one lm-eval pass (first checked
        against the budget, if `capped`: BudgetExhausted when it would not fit)."""
        from lm_eval.evaluator import evaluate

        if split not in ("train", "dev"):
            raise ValueError("the search scores on train and dev only; the test split is evaluated once, at the end")
        indices = sorted(set(indices))
        part = self.splits[split]
        physical = {part.indices[i]: i for i in indices}
        keys = [p.sha256() for p in prompts]
        todo = self._todo(prompts, split, indices)
        if todo:
            if capped and self.budget is not None:
                self.budget.target_pass(self._requests(todo, split))
            started = time.perf_counter()
            reached = self.counter.requests
            names = [f"{self.task}@{short}" for short in todo]
            configs = [fields.task_config(self.base_config, job["prompt"], name, part.split) for name, job in zip(names, todo.values())]
            with quiet_lm_eval(self.quiet):
                loaded = self.manager.load(configs)
                for task in loaded["tasks"].values():
                    set_up(task, self.harness)
            with quiet_lm_eval(self.quiet), target_calls():
                results = evaluate(
                    lm=self.model, task_dict=loaded,
                    samples={name: sorted(part.indices[i] for i in job["missing"]) for name, job in zip(names, todo.values())},
                    bootstrap_iters=0, log_samples=True, verbosity="ERROR" if self.quiet else "INFO",
                    **self.harness.evaluate_kwargs(),
                )
            rows = {name: [r for r in results["samples"][name] if r["filter"] == self.filter_name] for name in names}
            self.counter.cache_hits([r for name in names for r in rows[name]], reached)
            for name, job in zip(names, todo.values()):
                for row in rows[name]:
                    index = physical[row["doc_id"]]
                    self._memo[(job["key"], split, index)] = self.sample(row, split, index)
            self.target_seconds += time.perf_counter() - started
        return [self.summarise([self._memo[(key, split, i)] for i in indices]) for key in keys]

    def sample(self, row: dict, split: str, index: int) -> tuple[Sample, object]:
        """An lm-eval sample-log row (of document `index` of logical split `split`) as a Sample, with the
        metric's raw per-example item."""
        doc, item = row["doc"], row[self.metric]
        if self.output_type == "multiple_choice":
            choices = self.reference.doc_to_choice(doc)
            loglikelihoods = [float(r[0]) for r in row["filtered_resps"]]
            output = answer = str(choices[max(range(len(choices)), key=loglikelihoods.__getitem__)])
        else:
            output, answer = row["resps"][0][0], _first(row["filtered_resps"][0])
        score = self.measure.value(item)
        sample = Sample(index=index, id=doc_id(doc, self.splits[split].split, self.splits[split].indices[index]), doc=doc,
                        prompt=str(row["arguments"][0][0]), output=output, answer=answer,
                        target=self.gold(doc), score=score, correct=self.correct(score))
        return sample, item

    def summarise(self, scored: list[tuple[Sample, object]]) -> Score:
        """The task's own aggregation of the examples' metric values (the mean for most metrics)."""
        from lm_eval.api.metrics import mean, mean_stderr

        samples = [s for s, _ in scored]
        n = len(samples)
        if not n:
            return Score(0.0, None, 0)
        aggregate = self.measure.aggregation
        value = float(aggregate([item for _, item in scored]))
        stderr = mean_stderr([s.score for s in samples]) if aggregate is mean and n > 1 else None
        return Score(value=value, stderr=stderr, n=n, samples=samples)

    def correct(self, score: float) -> bool:
        """Not an error: the score reaches the error threshold (`tasks.metrics`)."""
        return self.measure.correct(score)

    @property
    def target_requests(self) -> int:
        return self.counter.requests

    @property
    def models(self) -> tuple[str, ...]:
        """The labels of the targets whose samples a score holds ("": the one target of a run)."""
        return ("",)

    def pending(self, prompts: list[Prompt], split: str, indices: list[int]) -> int:
        """The target requests scoring these prompts on these examples would make (what is not yet scored)."""
        return self._requests(self._todo(prompts, split, sorted(set(indices))), split)

    # --- internals ---

    def _todo(self, prompts: list[Prompt], split: str, indices: list[int]) -> dict[str, dict]:
        """The prompts with examples not yet scored, by short key: the prompt, its key and those examples."""
        todo: dict[str, dict] = {}
        for prompt in prompts:
            key = prompt.sha256()
            missing = [i for i in indices if (key, split, i) not in self._memo]
            if missing and key[:16] not in todo:
                todo[key[:16]] = {"prompt": prompt, "key": key, "missing": missing}
        return todo

    def _requests(self, todo: dict[str, dict], split: str) -> int:
        """The target requests of the examples `_todo` found missing."""
        docs = self.docs(split)
        return sum(self._requests_per_doc(docs[i]) for job in todo.values() for i in job["missing"])

    def _requests_per_doc(self, doc: dict) -> int:
        return len(self.reference.doc_to_choice(doc)) if self.output_type == "multiple_choice" else 1
