"""The door of a run: the settings (`OptimizeConfig`) unpacked into the small frozen values each layer
takes, the task found by name, built once and split, the target loaded and counted once, the optimizer
client, and the bridge between them. Below this module nothing sees the settings object."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from lm_eval_abo.artifact.prompt import Prompt
from lm_eval_abo.config import HarnessSettings, OptimizeConfig
from lm_eval_abo.cost.ledger import Budget, Caps, Ledger, Price
from lm_eval_abo.cost.prices import Prices, optimizer_price, target_price
from lm_eval_abo.cost.target import CountingLM
from lm_eval_abo.infra.errors import AboError
from lm_eval_abo.infra.files import user_cache_dir
from lm_eval_abo.infra.flags import parse_pairs
from lm_eval_abo.infra.llm import OptimizerLLM
from lm_eval_abo.optimizers import resolve
from lm_eval_abo.optimizers.base import Context, Method, OptimizerCalls
from lm_eval_abo.panel import Panel
from lm_eval_abo.run.targets import Target
from lm_eval_abo.scoring import OUTPUT_TYPES, Bridge
from lm_eval_abo.tasks import AboTask, lookup, splits
from lm_eval_abo.tasks.built import Harness, physical_docs, quiet_lm_eval
from lm_eval_abo.tasks.configs import load_config
from lm_eval_abo.tasks.metrics import Metric


def resolve_run(config: OptimizeConfig) -> tuple[OptimizeConfig, Method, object]:
    """The config with its preset's sizes and its method's parameters filled in, checked; the method and
    its parameters (`optimizers.resolve`). Resolving a resolved config changes nothing."""
    config = config.resolved()
    method, params = resolve(config.method, config.preset, config.method_args)
    patience = config.patience if config.patience is not None else method.patience
    return replace(config, method_args=asdict(params), patience=patience), method, params


def target_of(config: OptimizeConfig) -> Target:
    return Target(config.model, config.model_args, config.batch_size, config.device, config.apply_chat_template)


def specs_of(config: OptimizeConfig) -> dict[str, Target]:
    """The targets of a run with several, by label ({} for a run with one: `target_of`)."""
    return {label: replace(target_of(config), model=model, model_args=args) for label, model, args, _ in config.targets}


@dataclass(frozen=True)
class Sizes:
    """How much of each split a run uses, and the search's shape (`candidates`: new candidates per round for
    every method, None: as each method's parameters make them)."""

    rounds: int
    beam: int
    minibatch: int
    train_limit: int | None
    dev_limit: int | None
    test_limit: int | None
    candidates: int | None = None


@dataclass
class Session:
    """A task ready to optimize (the bridge holds it), the run's sizes, and, once attached, the models."""

    bridge: Bridge  # the task through lm-eval; scores once a target is attached
    sizes: Sizes
    seed: int
    sampling_temperature: float
    target_spec: Target
    quiet: bool = True  # lm-eval's own log kept out of the console
    target: CountingLM | None = None
    llm: OptimizerLLM | None = None
    ledger: Ledger = field(default_factory=Ledger)  # both models' requests, tokens and dollars
    specs: dict[str, Target] = field(default_factory=dict)  # several targets by label, the bridge a Panel ({}: one)

    def each(self) -> list[tuple[str, Session]]:
        """The session of each target by label ("": the run's one), sharing the task, splits and ledger."""
        if not self.specs:
            return [("", self)]
        return [(label, replace(self, bridge=self.bridge.bridges[label], target_spec=spec,
                                target=self.bridge.bridges[label].counter, specs={}))
                for label, spec in self.specs.items()]

    @property
    def task_name(self) -> str:
        return self.bridge.task

    @property
    def default_prompt(self) -> Prompt:
        return self.bridge.default_prompt

    @property
    def train_pool(self) -> list[int]:
        """Train examples the run may use."""
        n = len(self.bridge.splits.train.indices)
        return list(range(min(self.sizes.train_limit or n, n)))

    @property
    def dev_indices(self) -> list[int]:
        n = len(self.bridge.splits.dev.indices)
        return list(range(min(self.sizes.dev_limit or n, n)))

    @property
    def n_test(self) -> int:
        return len(self.bridge.splits.test.indices)

    def context(self, params, record=None, engine_dir: Path | None = None) -> Context:
        """What a method works with in this session (`params`: its parameters; `record`: where each optimizer
        call goes)."""
        calls = OptimizerCalls(self.llm, self.seed, self.sampling_temperature, record=record)
        return Context(task=self.bridge, calls=calls, params=params, seed=self.seed, train_pool=self.train_pool,
                       dev_indices=self.dev_indices, engine_dir=engine_dir, candidates=self.sizes.candidates)

    def split_ids(self) -> dict[str, list[str]]:
        """The documents each split used, as `doc_id` names them."""
        used = {"train": self.train_pool, "dev": self.dev_indices, "test": range(self.n_test)}
        out = {}
        for name, positions in used.items():
            part = self.bridge.splits[name]
            docs = physical_docs(self.bridge.reference, part.split)
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


def harness_of(settings: HarnessSettings, target: Target) -> Harness:
    return Harness(gen_kwargs=dict(settings.gen_kwargs), system_instruction=settings.system_instruction,
                   apply_chat_template=settings.apply_chat_template, fewshot_as_multiturn=settings.fewshot_as_multiturn,
                   use_cache=target.cache(settings.use_cache))


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
                       f"{task.OUTPUT_TYPE} task; use an APO method (ape, apo, apo-sum, promptagent, promptagent-beam, "
                       "opro)")
    Metric.of(task, config.metric, config.error_threshold)  # a --metric the task lacks fails before any model loads
    default = task.abo_prompt if base.pop("class", None) else Prompt()
    own = splits.task_splits(task.config)
    sizes = {name: len(physical_docs(task, name)) for name in set(own.values()) if name is not None}
    plan = splits.plan(task.config, sizes, config.seed, config.train_limit, config.dev_limit, config.test_limit)
    target, specs = target_of(config), specs_of(config)

    def bridge_of(spec: Target) -> Bridge:
        return Bridge(None, task, base, plan, manager, harness=harness_of(config, spec), default_prompt=default,
                      metric=config.metric, answer_format=config.answer_format, quiet=not config.verbose,
                      error_threshold=config.error_threshold)

    bridge = Panel({label: bridge_of(spec) for label, spec in specs.items()}, config.objective) if specs else \
        bridge_of(target)
    return Session(bridge, Sizes(config.rounds, config.beam, config.minibatch, config.train_limit, config.dev_limit,
                                 config.test_limit, config.candidates), config.seed, config.sampling_temperature, target,
                   quiet=not config.verbose, specs=specs)


def caps_of(config: OptimizeConfig) -> Caps:
    return Caps(config.max_cost, config.max_target_tokens, config.max_optimizer_calls)


def prices_of(config: OptimizeConfig, label: str | None = None) -> Prices:
    """The run's prices (with several targets, those of the target `label`, default the first), checked against
    its caps (--max-cost without a price fails here)."""
    model, args, given = next(((m, a, p) for name, m, a, p in config.targets if name == label),
                              (config.model, config.model_args, config.target_price))
    found = Prices(target_price(model, parse_pairs(args, "--model_args"), given),
                   optimizer_price(config.optimizer, config.optimizer_price))
    return found.check(caps_of(config), model, config.optimizer)


def attach_models(session: Session, config: OptimizeConfig, lm=None, budget: Budget | None = None) -> Session:
    """The optimizer and the target (`lm`: an already loaded one, reused) on a planned session, both entering
    what they use in the session's ledger; `budget` (over that ledger) caps the search."""
    prices = prices_of(config)
    budget = budget or Budget(session.ledger, caps_of(config))
    session.llm = OptimizerLLM(  # first: a bad --optimizer fails before the target loads
        config.optimizer, config.optimizer_args,
        cache_dir=user_cache_dir() / "optimizer" if config.optimizer_cache == "default" else config.optimizer_cache,
        budget=budget, price=Price(*config.optimizer_price, "--optimizer-price") if config.optimizer_price else None,
        concurrency=config.concurrency, usage=session.ledger.optimizer,
    )
    if session.specs:
        attach_targets(session, config, lm, budget)
    else:
        attach_target(session, lm, prices.target, budget)
    if callable(getattr(session.bridge.reference.config.process_results, "prepare", None)):
        install_grader(session, config)
    return session


def attach_target(session: Session, lm=None, price: Price | None = None, budget: Budget | None = None) -> Session:
    """The target alone on a planned session (`lm`: an already loaded one), entering what it uses in the
    session's ledger at `price`: enough to evaluate prompts on test (`evaluation.evaluate`)."""
    if session.bridge.harness.use_cache:  # lm-eval's sqlite cache does not make its folder
        Path(session.bridge.harness.use_cache).parent.mkdir(parents=True, exist_ok=True)
    session.target = CountingLM(lm or session.target_spec.load(), session.ledger.target, price)
    session.bridge.attach(session.target, budget)
    return session


def attach_targets(session: Session, config: OptimizeConfig, lm=None, budget: Budget | None = None) -> Session:
    """Every target of a run with several, each loaded (`lm`: the first's, already loaded, or loaded models by
    label) and entering what it uses in the session's one ledger at its own price."""
    given = lm if isinstance(lm, dict) else {next(iter(session.specs)): lm} if lm is not None else {}
    for label, spec in session.specs.items():
        bridge = session.bridge.bridges[label]
        if bridge.harness.use_cache:  # lm-eval's sqlite cache does not make its folder
            Path(bridge.harness.use_cache).parent.mkdir(parents=True, exist_ok=True)
        loaded = given[label] if given.get(label) is not None else spec.load()
        bridge.attach(CountingLM(loaded, session.ledger.target, prices_of(config, label).target), budget)
    session.target = session.bridge.first.counter
    return session


def install_grader(session: Session, config: OptimizeConfig) -> None:
    """The run's grader for a metric that asks a model (an imported promptfoo task's model-graded assertions):
    the config's grader, a --metadata abo_grader, else the optimizer; its calls in the ledger's grader line,
    its replies in the optimizer's cache."""
    from lm_eval_abo.promptfoo import grader

    graders = grader.Graders(default=(config.optimizer, dict(config.optimizer_args)), usage=session.ledger.grader,
                             cache_dir=session.llm.cache_dir if session.llm.cached else None,
                             default_price=session.llm.price, concurrency=config.concurrency)
    graders.set_override(config.metadata)
    grader.install(graders)


def open_session(config: OptimizeConfig, lm=None, reads_text: str | None = None) -> Session:
    """`plan_session`, then `attach_models`."""
    return attach_models(plan_session(config, reads_text), config, lm)


def artifact_config(artifact, harness: HarnessSettings, **more) -> OptimizeConfig:
    """The settings that rebuild the task and splits an artifact's run used, with `harness` over the run's own
    settings (and `more`, e.g. another target's model and model_args)."""
    done, recorded = artifact.settings, artifact.splits
    return OptimizeConfig(
        task=artifact.task, seed=done.get("seed", 1234), metric=done.get("metric"),
        error_threshold=done.get("error_threshold"),
        **{f"{split}_limit": len(recorded[split]) if recorded.get(split) else None for split in ("train", "dev", "test")},
        **{**vars(harness.over(done)), **more},
    )


def artifact_session(artifact, harness: HarnessSettings, **more) -> Session:
    """The task and splits an artifact's run used, rebuilt without a model (`artifact_config`); checked against
    the test documents the artifact recorded."""
    recorded = artifact.splits
    session = plan_session(artifact_config(artifact, harness, **more))
    if recorded.get("test") and session.split_ids()["test"] != recorded["test"]:
        raise AboError(f"the test documents of {artifact.task} are not those the artifact's run used (changed data, "
                       "--metadata or --include_path?)")
    return session
