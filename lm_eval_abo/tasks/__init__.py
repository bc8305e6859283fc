"""Tasks: the bundled abo_* tasks here, and in the submodules what lets any lm-eval task be optimized.

  lookup   find a task by name: the plugin's and the user's paths first, lm-eval's own index after
  splits   train, dev and test of any task, carved (seeded, disjoint) where the task lacks them
  fields   a prompt in lm-eval's own task fields (description, few-shot samples, gen_prefix)
  configs  task configs read from and written to YAML (`!function` references that import anywhere)
  export   the optimized prompt as a plain lm-eval task that the stock `lm_eval` runs

Every abo_* YAML names `class: !function lm_eval_abo.tasks.AboTask`. The class reads the prompt given
at run time (`--metadata '{"abo_prompt": "runs/x/best.yaml"}'`, or a prompt mapping), falls back to the
YAML's `metadata.abo_default_prompt`, writes it into the task's fields (`fields.apply`), and records
the artifact's method and hashes in lm-eval's results (`configs.<task>.metadata.abo`).
"""

from __future__ import annotations

from pathlib import Path

from lm_eval.api.task import ConfigurableTask

from lm_eval_abo.artifact import store
from lm_eval_abo.artifact.prompt import Demonstration, Prompt
from lm_eval_abo.infra.errors import AboError
from lm_eval_abo.infra.redact import redact_args
from lm_eval_abo.tasks import fields
from lm_eval_abo.tasks.lookup import tasks_dir

PROMPT_KEY = "abo_prompt"  # the --metadata key naming an artifact (fixed interface)
DEFAULT_PROMPT_KEY = "abo_default_prompt"
COT_KEY = "abo_cot_exemplars"


def list_tasks() -> dict[str, str]:
    """Each abo_* task with where its data comes from."""
    from lm_eval.tasks._yaml_loader import load_yaml

    found = {}
    for path in sorted(tasks_dir().glob("abo_*.yaml")):
        config = load_yaml(path, resolve_func=False)
        loader = str(config.get("custom_dataset", "")).rsplit(".", 1)[-1]
        source = " ".join(str(v) for v in (config.get("dataset_kwargs") or {}).values())
        found[config["task"]] = f"{loader} {source}".strip()
    return found


def cot_exemplars(metadata: dict) -> tuple[Demonstration, ...]:
    """The chain-of-thought exemplars lm-eval ships for this task (metadata.abo_cot_exemplars names the
    file under lm-eval's tasks directory), as demonstrations: the few-shot CoT baseline."""
    import lm_eval.tasks
    from lm_eval.tasks._yaml_loader import load_yaml

    relative = metadata.get(COT_KEY)
    if not relative:
        return ()
    config = load_yaml(Path(lm_eval.tasks.__file__).parent / relative, resolve_func=False)
    samples = (config.get("fewshot_config") or {}).get("samples") or []
    return tuple(Demonstration(doc={"input": s.get("input", s.get("question", ""))}, output=s["target"]) for s in samples)


def resolve_prompt(metadata: dict, task: str) -> tuple[Prompt, dict]:
    """The prompt a task run uses, and what the results should record about where it came from."""
    given = metadata.get(PROMPT_KEY)
    if isinstance(given, dict):  # an inline candidate from the optimizer
        prompt = Prompt.from_dict(given, where=f"{task}: metadata.{PROMPT_KEY}")
        return prompt, {"source": "inline", "prompt_sha256": prompt.sha256()}
    if given:
        artifact = store.load(given, task=_base_task(metadata, task))
        return artifact.prompt, {
            "source": str(given),
            "method": artifact.method,
            "artifact_sha256": store.file_sha256(given),
            "prompt_sha256": artifact.prompt.sha256(),
        }
    prompt = Prompt.from_dict(metadata.get(DEFAULT_PROMPT_KEY) or {}, where=f"{task}: metadata.{DEFAULT_PROMPT_KEY}")
    return prompt, {"source": "default", "method": "baseline", "prompt_sha256": prompt.sha256()}


def _base_task(metadata: dict, task: str) -> str:
    """The registered task a (possibly renamed) task object stands for."""
    return metadata.get("abo_task", task)


class AboTask(ConfigurableTask):
    """An abo_* task: a plain lm-eval task whose prompt is read at run time (see the module docstring)."""

    def __init__(self, config: dict | None = None, **kwargs):
        config = {k: v for k, v in (config or {}).items() if k != "class"}  # lm-eval passes its `class:` key along
        metadata = config.get("metadata") or {}
        try:
            self.abo_prompt, self.abo_record = resolve_prompt(metadata, config.get("task", "?"))
            config = fields.apply(config, self.abo_prompt)
        except AboError as e:
            raise AboError(f"{config.get('task')}: {e}") from None
        super().__init__(config=config, **kwargs)

    def download(self, dataset_kwargs=None, **kwargs) -> None:
        try:
            super().download(dataset_kwargs, **kwargs)
        except AboError as e:
            raise AboError(f"{self.config.task}: {e}") from None

    def apply_filters(self):
        """lm-eval's filters, then, where the task's `process_results` has a `prepare` hook (a metric that
        grades with a model, e.g. an imported promptfoo task), the whole pass handed to it at once: each
        document with the prompt sent and its filtered replies, and the task's metadata."""
        found = super().apply_filters()
        prepare = getattr(self.config.process_results, "prepare", None)
        if callable(prepare) and self._instances:
            prepare([(i.doc, str(getattr(i.args[0], "prompt", i.args[0])), list(i.filtered_resps.values()))
                     for i in self._instances], dict(self.config.metadata or {}))
        return found

    def dump_config(self) -> dict:
        config = super().dump_config()
        metadata = dict(config.get("metadata") or {})
        if isinstance(metadata.get(PROMPT_KEY), dict):  # the inline prompt is recorded by its hash
            metadata[PROMPT_KEY] = self.abo_record["prompt_sha256"]
        metadata["abo"] = self.abo_record
        config["metadata"] = redact_args(metadata)  # lm-eval copies model_args, keys included, in here
        return config
