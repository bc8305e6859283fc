"""The bridge to lm-eval: everything the optimizers know about a task comes through here.

Candidate prompts are scored by lm-eval itself: each candidate becomes a copy of the task's own config
(same filters, metrics, generation settings) carrying the prompt inline, all candidates of a call go
to the model in one `evaluate` pass, and per-example results come from lm-eval's sample logs. An
identical (prompt, split, example) is scored at most once per run.
"""

from __future__ import annotations

import copy
import logging
import time
from contextlib import contextmanager
from dataclasses import dataclass, field

from lm_eval.api.model import LM

from lm_eval_abo.errors import AboError
from lm_eval_abo.prompt import Prompt
from lm_eval_abo.tasks import DEFAULT_PROMPT_KEY, PROMPT_KEY

LOGICAL_SPLITS = {"train": "training_split", "dev": "validation_split", "test": "test_split"}


@dataclass(frozen=True)
class Sample:
    """One example as the target saw and answered it."""

    index: int  # position in its split
    doc: dict
    prompt: str  # the full text lm-eval sent to the target
    output: str  # the raw reply
    answer: str  # the reply after the task's filter
    score: float  # the task's primary metric for this example

    @property
    def correct(self) -> bool:
        return self.score >= 1.0

    @property
    def target(self) -> str:
        return str(self.doc.get("target", ""))


@dataclass
class Score:
    value: float
    stderr: float | None
    n: int
    samples: list[Sample] = field(default_factory=list)

    def errors(self) -> list[Sample]:
        return [s for s in self.samples if not s.correct]


def _first(filtered) -> str:
    """A filtered response: filters such as take_first leave a string, others a list."""
    return str(filtered[0] if isinstance(filtered, (list, tuple)) else filtered)


class CountingLM(LM):
    """Passes every request to the wrapped model and counts the ones that reach it
    (under lm-eval's CachingLM, cache hits never do)."""

    def __init__(self, inner: LM):
        super().__init__()
        self.inner = inner
        self.requests = 0

    def _count(self, name: str, requests, disable_tqdm: bool):
        self.requests += len(requests)
        return getattr(self.inner, name)(requests, disable_tqdm=disable_tqdm)

    def loglikelihood(self, requests, disable_tqdm: bool = False):
        return self._count("loglikelihood", requests, disable_tqdm)

    def loglikelihood_rolling(self, requests, disable_tqdm: bool = False):
        return self._count("loglikelihood_rolling", requests, disable_tqdm)

    def generate_until(self, requests, disable_tqdm: bool = False):
        return self._count("generate_until", requests, disable_tqdm)

    def set_cache_hook(self, cache_hook) -> None:
        self.inner.set_cache_hook(cache_hook)  # the wrapped model writes each result as it comes

    def apply_chat_template(self, chat_history, add_generation_prompt: bool = True):
        return self.inner.apply_chat_template(chat_history, add_generation_prompt=add_generation_prompt)

    @property
    def tokenizer_name(self) -> str:
        return self.inner.tokenizer_name

    def chat_template(self, chat_template=False):
        return self.inner.chat_template(chat_template)

    def __getattr__(self, name):
        return getattr(self.inner, name)


class TargetFailed(AboError):
    """The target model stopped answering (a server that died or timed out, after lm-eval's retries)."""


@contextmanager
def target_calls():
    """Around lm-eval calls that reach the target: a network failure becomes one clear TargetFailed.
    lm-eval's API backends raise requests' errors (OSError subclasses) or aiohttp's."""
    failures: tuple[type[BaseException], ...] = (OSError,)
    try:
        import aiohttp

        failures += (aiohttp.ClientError,)
    except ImportError:
        pass
    try:
        yield
    except failures as e:
        raise TargetFailed(f"the target model failed: {_network_error(e)}") from e


def _network_error(error: BaseException) -> str:
    """A network error in short: requests nests the OS reason ("[Errno 111] Connection refused") deep in
    a long message; the URL comes from the request."""
    import re

    text = str(error)
    reason = re.search(r"\[Errno -?\d+\] [^'\")]+", text)
    detail = reason.group(0) if reason else (text.strip().splitlines() or [""])[0][:240]
    url = getattr(getattr(error, "request", None), "url", None)
    return f"{type(error).__name__}: {detail}" + (f" ({url})" if url else "")


@contextmanager
def quiet_lm_eval(enabled: bool = True):
    """lm-eval logs several lines per task load; while scoring many candidates, keep only errors."""
    logger = logging.getLogger("lm_eval")
    level = logger.level
    if enabled:
        logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


class Bridge:
    """One task, one loaded target model, and the settings every scoring call shares."""

    def __init__(
        self,
        lm: LM,
        task: str,
        task_manager,
        gen_kwargs: dict | None = None,
        use_cache: str | None = None,
        system_instruction: str | None = None,
        apply_chat_template: bool = False,
        fewshot_as_multiturn: bool = False,
        fewshot_seed: int = 1234,
        quiet: bool = True,
    ):
        from lm_eval.tasks._yaml_loader import load_yaml

        if task not in task_manager.task_index:
            raise AboError(f"unknown task {task!r}; see `lm-eval-abo tasks`")
        self.counter = CountingLM(lm)
        if use_cache:
            from lm_eval.api.model import CachingLM

            self.model = CachingLM(self.counter, f"{use_cache}_rank0.db")
        else:
            self.model = self.counter
        self.task = task
        self.task_manager = task_manager
        self.gen_kwargs = gen_kwargs or {}
        self.eval_kwargs = dict(
            system_instruction=system_instruction,
            apply_chat_template=apply_chat_template,
            fewshot_as_multiturn=fewshot_as_multiturn,
        )
        self.fewshot_seed = fewshot_seed
        self.quiet = quiet
        self.base_config = load_yaml(task_manager.task_index[task].yaml_path, resolve_func=True)
        if (self.base_config.get("metadata") or {}).get(DEFAULT_PROMPT_KEY) is None and "class" not in self.base_config:
            raise AboError(f"task {task!r} is not an abo task (its YAML needs the lm_eval_abo.tasks.AboTask class)")
        with quiet_lm_eval(quiet):
            self.reference = task_manager.load([task])["tasks"][task]  # the task as the user configured it
        self._apply_settings(self.reference)
        self.filter_name, self.metric, self.higher_is_better = self._primary_metric(self.reference)
        self._memo: dict[tuple[str, str, int], Sample] = {}
        self.target_seconds = 0.0  # wall time spent scoring: task builds and lm-eval passes

    # --- what the optimizers may know about the task ---

    @property
    def default_prompt(self) -> Prompt:
        return self.reference.abo_prompt

    @property
    def metric_key(self) -> str:
        return f"{self.metric},{self.filter_name}"

    def docs(self, split: str) -> list[dict]:
        """The documents of a logical split (train, dev or test), in order."""
        name = getattr(self.reference.config, LOGICAL_SPLITS[split])
        return [{k: v for k, v in d.items() if not k.startswith("abo_")} for d in self.reference.dataset[name]]

    def question(self, doc: dict) -> str:
        """A document's question as the target sees it, without any prompt parts."""
        if "input" in doc:
            return str(doc["input"])
        return str(self.reference.doc_to_text(doc, self.reference.fewshot_cfg.doc_to_text))

    def check(self, outputs: list[str], docs: list[dict]) -> list[tuple[str, float]]:
        """The task's own filter and metric applied to replies written elsewhere (e.g. by the
        optimizer for a demonstration): (extracted answer, metric value) per reply."""
        from lm_eval.api.instance import Instance

        instances = []
        for i, (text, doc) in enumerate(zip(outputs, docs)):
            inst = Instance("generate_until", doc, ("", {}), idx=0, metadata=(self.task, i, 1))
            inst.resps = [text]
            instances.append(inst)
        results = []
        for f in self.reference._filters:  # the task's built filter ensembles (lm-eval has no public accessor)
            if f.name == self.filter_name:
                f.apply(instances)
        for inst, doc in zip(instances, docs):
            answer = inst.filtered_resps[self.filter_name]
            value = self.reference.process_results(doc, [answer])[self.metric]
            results.append((_first(answer), float(value)))
        return results

    # --- scoring ---

    def score(self, prompts: list[Prompt], split: str, indices: list[int]) -> list[Score]:
        """Score each prompt on the given examples of a split, all in one lm-eval pass."""
        from lm_eval.evaluator import evaluate

        if split not in ("train", "dev"):
            raise ValueError("the search scores on train and dev only; the test split is evaluated once, at the end")
        indices = sorted(set(indices))
        keys = [p.sha256() for p in prompts]
        todo: dict[str, dict] = {}
        for prompt, key in zip(prompts, keys):
            missing = [i for i in indices if (key, split, i) not in self._memo]
            if missing and key[:16] not in todo:
                todo[key[:16]] = {"prompt": prompt, "key": key, "missing": missing}
        if todo:
            started = time.perf_counter()
            configs = [self._candidate_config(job["prompt"], split, name) for name, job in todo.items()]
            with quiet_lm_eval(self.quiet):
                loaded = self.task_manager.load(configs)
                for task in loaded["tasks"].values():
                    self._apply_settings(task)
            with quiet_lm_eval(self.quiet), target_calls():
                results = evaluate(
                    lm=self.model,
                    task_dict=loaded,
                    samples={self._name(n): job["missing"] for n, job in todo.items()},
                    bootstrap_iters=0,
                    log_samples=True,
                    verbosity="ERROR" if self.quiet else "INFO",
                    **self.eval_kwargs,
                )
            for name, job in todo.items():
                for row in results["samples"][self._name(name)]:
                    if row["filter"] != self.filter_name:
                        continue
                    self._memo[(job["key"], split, row["doc_id"])] = Sample(
                        index=row["doc_id"],
                        doc={k: v for k, v in row["doc"].items() if not k.startswith("abo_")},
                        prompt=row["arguments"][0][0],
                        output=row["resps"][0][0],
                        answer=_first(row["filtered_resps"][0]),
                        score=float(row[self.metric]),
                    )
            self.target_seconds += time.perf_counter() - started
        return [self._summarise([self._memo[(key, split, i)] for i in indices]) for key in keys]

    @property
    def target_requests(self) -> int:
        return self.counter.requests

    # --- internals ---

    def _name(self, short_key: str) -> str:
        return f"{self.task}@{short_key}"

    def _candidate_config(self, prompt: Prompt, split: str, short_key: str) -> dict:
        config = copy.deepcopy(self.base_config)
        config["task"] = self._name(short_key)
        config["test_split"] = config[LOGICAL_SPLITS[split]]
        config["metadata"] = {**(config.get("metadata") or {}), PROMPT_KEY: prompt.to_dict(), "abo_task": self.task}
        return config

    def _apply_settings(self, task) -> None:
        if self.gen_kwargs:
            task.set_config("generation_kwargs", dict(self.gen_kwargs), update=True)
        task.set_fewshot_seed(self.fewshot_seed)

    @staticmethod
    def _primary_metric(task) -> tuple[str, str, bool]:
        """The task's first metric under its first filter (lm-eval's `metric,filter` key)."""
        metric = next(iter(task.aggregation()))
        filters = [f["name"] for f in task.config.filter_list or []] or ["none"]
        return filters[0], metric, bool(task.higher_is_better().get(metric, True))

    def _summarise(self, samples: list[Sample]) -> Score:
        from lm_eval.api.metrics import mean_stderr

        values = [s.score for s in samples]
        n = len(values)
        value = sum(values) / n if n else 0.0
        return Score(value=value, stderr=mean_stderr(values) if n > 1 else None, n=n, samples=samples)
