"""Tasks as lm-eval builds them: their documents, the requests they make, built without lm-eval's chatter,
under `Harness`, the settings of lm-eval's own that every scoring and evaluation call shares."""

from __future__ import annotations

import json
import logging
from contextlib import contextmanager
from dataclasses import dataclass, field

FEWSHOT_SEED = 1234  # lm-eval's default --fewshot_random_seed


@dataclass(frozen=True)
class Harness:
    """How lm-eval renders, generates and caches a task's requests: its --gen_kwargs,
    --system_instruction, --apply_chat_template, --fewshot_as_multiturn and the target's --use_cache file
    prefix (named for the target model)."""

    gen_kwargs: dict = field(default_factory=dict)
    system_instruction: str | None = None
    apply_chat_template: bool = False
    fewshot_as_multiturn: bool = False
    use_cache: str | None = None

    def evaluate_kwargs(self) -> dict:
        """What lm-eval's evaluate() and simple_evaluate() take as they are (prompt rendering)."""
        return {"system_instruction": self.system_instruction, "apply_chat_template": self.apply_chat_template,
                "fewshot_as_multiturn": self.fewshot_as_multiturn}


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


def physical_docs(task, split: str):
    """A task split's documents as lm-eval evaluates them (after the task's process_docs): a `datasets.Dataset`."""
    docs = task.dataset[split]
    return task.config.process_docs(docs) if task.config.process_docs is not None else docs


def set_up(task, harness) -> None:
    """What `simple_evaluate` does to a task before evaluating it: the run's generation settings, zero
    few-shot examples where the task sets none, lm-eval's default few-shot seed."""
    if task.OUTPUT_TYPE == "generate_until" and harness.gen_kwargs:
        task.set_config("generation_kwargs", dict(harness.gen_kwargs), update=True)
    if task.get_config("num_fewshot") is None:
        task.set_config("num_fewshot", 0)
    task.set_fewshot_seed(FEWSHOT_SEED)


def messages_template(messages: list[dict], add_generation_prompt: bool = True) -> str:
    """A chat template for lm-eval that keeps the messages themselves, so chat prompts compare without a model."""
    return json.dumps(messages, ensure_ascii=False)


def requests(task, harness, samples: list[int] | None = None) -> list[list]:
    """The arguments of the requests lm-eval builds for each evaluated document, in order, no model needed."""
    set_up(task, harness)
    with quiet_lm_eval():
        task.build_all_requests(samples=samples, rank=0, world_size=1, chat_template=messages_template,
                                **harness.evaluate_kwargs())
    by_doc: dict[int, list] = {}
    for inst in task.instances:
        by_doc.setdefault(inst.doc_id, []).append(inst)
    return [[i.args for i in sorted(by_doc[d], key=lambda i: i.idx)] for d in sorted(by_doc)]


def gold(task, doc: dict) -> str:
    """A document's gold answer as text."""
    target = task.doc_to_target(doc)
    if isinstance(target, list):
        target = target[0] if target else ""
    if isinstance(target, int) and task.OUTPUT_TYPE == "multiple_choice":
        return str(task.doc_to_choice(doc)[target])
    return str(target)


def question(task, doc: dict) -> str:
    """A document's question as the target sees it, without any prompt parts."""
    text = str(doc["input"]) if "input" in doc else str(task.doc_to_text(doc))
    if task.OUTPUT_TYPE == "multiple_choice":
        text += "\nOptions: " + " | ".join(map(str, task.doc_to_choice(doc)))
    return text
