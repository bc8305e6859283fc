"""A task ready to optimize: found by name, built once, split; the target loaded and counted once; the
optimizer client; the bridge between them."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from lm_eval_abo.config import HarnessSettings, OptimizeConfig
from lm_eval_abo.errors import AboError
from lm_eval_abo.files import user_cache_dir
from lm_eval_abo.cost.ledger import Budget, Ledger, Price, prices
from lm_eval_abo.prompt import Prompt
from lm_eval_abo.redact import redact_arg_string
from lm_eval_abo.scoring import OUTPUT_TYPES, Bridge, primary_metric
from lm_eval_abo.cost.target import CountingLM
from lm_eval_abo.tasks import AboTask, lookup, splits
from lm_eval_abo.tasks.built import physical_docs, quiet_lm_eval
from lm_eval_abo.tasks.configs import load_config


def model_class(config: OptimizeConfig):
    """The lm-eval model backend named by --model, checked without loading anything."""
    import lm_eval.models  # noqa: F401  (built-in backends before the plugin's own)
    from lm_eval.api.registry import get_model

    from lm_eval_abo.config import parse_pairs

    parse_pairs(config.model_args, "--model_args")  # a typo fails here, not inside lm-eval
    if config.model == "abo-embedded":
        import lm_eval_abo.embedded.backend  # noqa: F401  (registers the embedded backend)
    try:
        model = get_model(config.model)
    except (KeyError, ValueError):
        raise AboError(f"unknown lm-eval model backend {config.model!r} (see lm-eval's model list)") from None
    except ImportError as e:  # lm-eval imports a backend's packages when it is first named
        raise missing_package(config.model, e) from None
    if _chat_only(model) and not config.apply_chat_template:
        raise AboError(f"--model {config.model} sends chat messages: add --apply_chat_template")
    return model


def load_target(config: OptimizeConfig):
    """The target model, loaded through lm-eval's registry."""
    model = model_class(config)
    try:
        lm = model.create_from_arg_string(config.model_args, {"batch_size": config.batch_size, "device": config.device})
        getattr(lm, "api_key", None)  # lm-eval's API backends read their key at the first request: read it now
        return lm
    except AboError:
        raise
    except ImportError as e:
        raise missing_package(config.model, e) from None
    except (TypeError, ValueError, AssertionError) as e:  # lm-eval checks a backend's arguments with asserts too
        lines = str(e).strip().splitlines() or [type(e).__name__]
        given = f" --model_args {redact_arg_string(config.model_args)}" if config.model_args else ""
        raise AboError(f"--model {config.model}{given}: {lines[0]}") from None


def missing_package(model: str, error: ImportError) -> AboError:
    """A backend whose Python packages are not installed, with the lm-eval extra that installs them."""
    import re
    from importlib import metadata

    module = (error.name or "").split(".")[0]
    extras = [m.group(2) for line in metadata.requires("lm_eval") or []
              if (m := re.match(r"([A-Za-z0-9_.\-]+).*extra == \"([^\"]+)\"", line))
              and re.sub(r"[-_.]+", "_", m.group(1)).lower() == module.lower()]
    how = f"pip install 'lm_eval[{extras[0]}]'" if extras else f"pip install {module}" if module else "install its packages"
    return AboError(f"--model {model} needs the Python package {module or '?'}, which is not installed: {how}")


def _chat_only(model) -> bool:
    """A backend that talks to a chat endpoint (lm-eval's chat-completions family)."""
    try:
        from lm_eval.models.openai_completions import LocalChatCompletion
    except ImportError:
        return False
    return isinstance(model, type) and issubclass(model, LocalChatCompletion)


def target_cache(config: OptimizeConfig) -> str | None:
    """lm-eval's cache keys requests by prompt only, so each target model gets its own file."""
    if not config.use_cache:
        return None
    import hashlib

    identity = hashlib.sha256(f"{config.model}|{config.model_args}".encode()).hexdigest()[:12]
    return f"{config.use_cache}_{identity}"


@dataclass
class Session:
    config: OptimizeConfig  # resolved
    manager: object  # lm-eval TaskManager that knows the task
    task: object  # the task as lm-eval builds it, once
    base_config: dict  # its config, which every candidate copies
    splits: splits.Splits
    default_prompt: Prompt  # the baseline: the task as written (an abo task: its default prompt)
    harness: HarnessSettings  # how lm-eval runs it (the target cache named for the target model)
    target: CountingLM | None = None
    bridge: Bridge | None = None
    llm: object = None  # llm.OptimizerLLM
    ledger: Ledger = field(default_factory=Ledger)  # both models' requests, tokens and dollars

    @property
    def train_pool(self) -> list[int]:
        """Train examples the run may use."""
        n = len(self.splits.train.indices)
        return list(range(min(self.config.train_limit or n, n)))

    @property
    def dev_indices(self) -> list[int]:
        n = len(self.splits.dev.indices)
        return list(range(min(self.config.dev_limit or n, n)))

    @property
    def n_test(self) -> int:
        return len(self.splits.test.indices)

    def context(self, params: dict | None = None, run_dir=None):
        from lm_eval_abo.optimizers.base import Context

        params = self.config.method_args if params is None else params
        return Context(llm=self.llm, bridge=self.bridge, params=params, seed=self.config.seed, train_pool=self.train_pool,
                       sampling_temperature=self.config.sampling_temperature, dev_indices=self.dev_indices,
                       run_dir=run_dir)

    def split_ids(self) -> dict[str, list[str]]:
        """The documents each split used, as `doc_id` names them."""
        used = {"train": self.train_pool, "dev": self.dev_indices, "test": range(self.n_test)}
        out = {}
        for name, positions in used.items():
            part = self.splits[name]
            docs = physical_docs(self.task, part.split)
            out[name] = [splits.doc_id(docs[part.indices[i]], part.split, part.indices[i]) for i in positions]
        return out


def build_task(manager, name: str, verbose: bool = False):
    """The task as lm-eval builds it; a failure (its dataset cannot be loaded, its YAML is wrong) is one line."""
    with quiet_lm_eval(not verbose):
        try:
            return manager.load([name])["tasks"][name]
        except AboError:
            raise
        except Exception as e:  # lm-eval and datasets raise many kinds; every one ends the same way
            lines = str(e).strip().splitlines()
            reason = f"{type(e).__name__}: {lines[0] if lines else ''}"[:500]
            raise AboError(f"cannot build task {name!r}: {reason}; fix its YAML or its data (--verbose shows "
                           "lm-eval's log)") from e


def plan_session(config: OptimizeConfig, reads_text: str | None = None) -> Session:
    """The task, built once, and its splits, without loading any model (enough for a dry run and the
    exports). `config`'s sizes must be resolved. `reads_text` names what will read the target's generated
    text (ABO, a study): a task that makes none is refused in one line."""
    manager = lookup.task_manager(config.task, config.include_path, config.metadata)
    base = load_config(manager.task_index[config.task].yaml_path)
    if base.get("class", AboTask) is not AboTask:
        raise AboError(f"task {config.task!r} is a Python class ({base['class'].__name__}); prompts can be optimized "
                       "for tasks configured in YAML")
    splits.task_splits(base)  # a task without a split to evaluate: one line before lm-eval's build says less
    task = build_task(manager, config.task, config.verbose)
    if task.OUTPUT_TYPE not in OUTPUT_TYPES:
        raise AboError(f"task {config.task!r} is a {task.OUTPUT_TYPE} task; prompts can be optimized for "
                       f"{' and '.join(OUTPUT_TYPES)} tasks")
    if reads_text and task.OUTPUT_TYPE != "generate_until":
        raise AboError(f"{reads_text} needs the target's generated text, and task {config.task!r} is a "
                       f"{task.OUTPUT_TYPE} task; use an APO method (ape, apo, apo-sum, promptagent, opro)")
    primary_metric(task, config.metric)  # a --metric the task does not have fails before any model loads
    default = task.abo_prompt if base.pop("class", None) else Prompt()
    own = splits.task_splits(task.config)
    sizes = {name: len(physical_docs(task, name)) for name in set(own.values()) if name is not None}
    plan = splits.plan(task.config, sizes, config.seed, config.train_limit, config.dev_limit, config.test_limit)
    harness = config.harness()
    harness.use_cache = target_cache(config)
    return Session(config, manager, task, base, plan, default, harness)


def open_session(config: OptimizeConfig, lm=None, reads_text: str | None = None) -> Session:
    """`plan_session`, then `attach_models`."""
    return attach_models(plan_session(config, reads_text), lm)


def attach_models(session: Session, lm=None, budget: Budget | None = None) -> Session:
    """The optimizer and the target (`lm`: an already loaded one, reused) on a planned session, both entering
    what they use in the session's ledger; `budget` (over that ledger) caps the search."""
    from lm_eval_abo.llm import OptimizerLLM

    config = session.config
    target_price, _ = prices(config)  # --max-cost without a price fails here
    budget = budget or Budget(session.ledger, config.max_cost, config.max_target_tokens, config.max_optimizer_calls)
    if session.harness.use_cache:  # lm-eval's sqlite cache does not make its folder
        Path(session.harness.use_cache).parent.mkdir(parents=True, exist_ok=True)
    session.llm = OptimizerLLM(  # first: a bad --optimizer fails before the target loads
        config.optimizer, config.optimizer_args,
        cache_dir=user_cache_dir() / "optimizer" if config.optimizer_cache == "default" else config.optimizer_cache,
        budget=budget, price=Price(*config.optimizer_price, "--optimizer-price") if config.optimizer_price else None,
        concurrency=config.concurrency, usage=session.ledger.optimizer,
    )
    session.target = CountingLM(lm or load_target(config), session.ledger.target, target_price)
    session.bridge = Bridge(session.target, session.task, session.base_config, session.splits, session.manager,
                            harness=session.harness, default_prompt=session.default_prompt, metric=config.metric,
                            answer_format=config.answer_format, quiet=not config.verbose)
    session.bridge.budget = budget
    return session


def artifact_session(artifact, harness: HarnessSettings) -> Session:
    """The task and splits an artifact's run used, rebuilt without a model, with `harness` over the run's
    own settings; checked against the test documents the artifact recorded."""
    done, recorded = artifact.settings, artifact.splits
    config = OptimizeConfig(
        task=artifact.task, seed=done.get("seed", 1234),
        **{f"{split}_limit": len(recorded[split]) if recorded.get(split) else None for split in ("train", "dev", "test")},
        **vars(harness.over(done)),
    )
    session = plan_session(config)
    if recorded.get("test") and session.split_ids()["test"] != recorded["test"]:
        raise AboError(f"the test documents of {artifact.task} are not those the artifact's run used (changed data, "
                       "--metadata or --include_path?)")
    return session
