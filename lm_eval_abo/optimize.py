"""`optimize`: a search run end to end, from the command line or from Python.

Loads the target once through lm-eval's model registry, runs the rounds of the chosen method, writes
the artifact, a checkpoint and a readable report after every round, then evaluates the best prompt once
on the test split through lm-eval (its normal results JSON and samples, beside the artifact).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from lm_eval_abo import embedded, metaprompts, report, store
from lm_eval_abo.errors import AboError
from lm_eval_abo.files import read_json, write_json, write_text_atomic
from lm_eval_abo.llm import CLIENT_ARGS
from lm_eval_abo.scoring import TargetFailed
from lm_eval_abo.redact import redact_arg_string, redact_args

DEFAULT_MODEL = "abo-embedded"
DEFAULT_MODEL_ARGS = f"model={embedded.DEFAULT_TARGET}"
DEFAULT_OPTIMIZER = f"embedded/{embedded.DEFAULT_OPTIMIZER}"

# Run sizes: "small" fits a laptop and the embedded models; "paper" follows the published settings
# (ProTeGi: 6 rounds, beam 4, minibatch 64; PromptAgent: beam 3), on the full splits.
PRESETS = {
    "small": {"rounds": 2, "beam": 2, "minibatch": 4, "train_limit": 16, "dev_limit": 10, "test_limit": 30},
    "paper": {"rounds": 6, "beam": 4, "minibatch": 64, "train_limit": None, "dev_limit": None, "test_limit": None},
}


@dataclass
class OptimizeConfig:
    task: str
    method: str = "abo"
    model: str = DEFAULT_MODEL
    model_args: str = DEFAULT_MODEL_ARGS
    optimizer: str = DEFAULT_OPTIMIZER
    optimizer_args: dict = field(default_factory=dict)  # passed to litellm.completion
    preset: str = "small"
    rounds: int | None = None  # None: from the preset
    beam: int | None = None
    minibatch: int | None = None  # train examples scored per round to find errors
    train_limit: int | None = None
    dev_limit: int | None = None
    test_limit: int | None = None
    method_args: dict = field(default_factory=dict)
    patience: int | None = None  # stop when the best dev score has not improved for this many rounds
    output: str = "runs"
    resume: bool = False
    max_optimizer_calls: int | None = None
    max_cost: float | None = None
    use_cache: str | None = None  # lm-eval's target cache (a path prefix)
    optimizer_cache: str | None = "default"  # a directory; "default": the user cache; None: no cache
    seed: int = 1234
    metadata: dict = field(default_factory=dict)  # task knobs, as lm_eval --metadata
    include_path: list[str] = field(default_factory=list)
    gen_kwargs: dict = field(default_factory=dict)
    system_instruction: str | None = None
    apply_chat_template: bool = False
    fewshot_as_multiturn: bool = False
    batch_size: str | int = 1
    device: str | None = None
    concurrency: int = 4
    dry_run: bool = False
    verbose: bool = False

    def resolved(self) -> OptimizeConfig:
        """The config with preset and method defaults filled in, checked."""
        from lm_eval_abo.optimizers import METHODS

        if self.method not in METHODS:
            raise AboError(f"unknown method {self.method!r}; known: {', '.join(METHODS)}")
        if self.preset not in PRESETS:
            raise AboError(f"unknown preset {self.preset!r}; known: {', '.join(PRESETS)}")
        sizes = {k: getattr(self, k) if getattr(self, k) is not None else v for k, v in PRESETS[self.preset].items()}
        method = METHODS[self.method]
        published = method.paper if self.preset == "paper" else {}
        params = {**method.defaults, **published, **self.method_args}
        unknown = set(params) - set(method.defaults)
        if unknown:
            raise AboError(f"unknown --method-args for {self.method}: {', '.join(sorted(unknown))}; known: {', '.join(method.defaults)}")
        for name, value in [*sizes.items(), ("concurrency", self.concurrency)]:
            least = 0 if name == "rounds" else 1  # --rounds 0: the baseline and the initial candidates only
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < least):
                raise AboError(f"{name.replace('_', '-')} must be a whole number of at least {least}, got {value!r}")
        for name, value in params.items():
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise AboError(f"method argument {name} must be a whole number of at least 0, got {value!r}")
        for name in ("max_optimizer_calls", "max_cost", "patience"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0):
                raise AboError(f"{name.replace('_', '-')} must not be negative, got {value!r}")
        patience = self.patience if self.patience is not None else getattr(method, "patience", None)
        return replace(self, **sizes, method_args=params, patience=patience)

    def fingerprint(self) -> dict:
        """The settings a resumed run must share with the run it continues."""
        keys = ("task", "method", "model", "optimizer", "seed", "beam", "minibatch", "train_limit", "dev_limit",
                "method_args", "gen_kwargs", "system_instruction", "apply_chat_template")
        return {
            **{k: getattr(self, k) for k in keys},
            "model_args": redact_arg_string(self.model_args),
            "metadata": redact_args(self.metadata),
            # the client's time-out and retries may change between a run and its resumption
            "optimizer_args": redact_args({k: v for k, v in self.optimizer_args.items() if k not in CLIENT_ARGS}),
        }


@dataclass
class Outcome:
    run_dir: Path
    artifact: Path
    results: Path | None  # lm-eval results JSON of the test evaluation
    artifact_data: store.Artifact


def _task_manager(config: OptimizeConfig, **extra_metadata):
    from lm_eval.tasks import TaskManager

    from lm_eval_abo.tasks import tasks_dir

    paths = [str(tasks_dir()), *config.include_path]
    return TaskManager(include_path=paths, include_defaults=False, metadata={**config.metadata, **extra_metadata})


def _model_class(config: OptimizeConfig):
    """The lm-eval model backend named by --model, checked without loading anything."""
    import lm_eval.models  # noqa: F401  (built-in backends before the plugin's own)
    from lm_eval.api.registry import get_model

    bad = [part for part in config.model_args.split(",") if part.strip() and "=" not in part]
    if bad:  # lm-eval would pass such a typo on as a flag with an empty value
        raise AboError(f"--model_args: expected key=value pairs separated by commas, got {bad[0]!r}")
    try:
        return get_model(config.model)
    except (KeyError, ValueError):
        raise AboError(f"unknown lm-eval model backend {config.model!r} (see lm-eval's model list)") from None


def _load_target(config: OptimizeConfig):
    model_class = _model_class(config)
    try:
        return model_class.create_from_arg_string(config.model_args, {"batch_size": config.batch_size, "device": config.device})
    except AboError:
        raise
    except (TypeError, ValueError) as e:
        raise AboError(f"--model {config.model} --model_args {redact_arg_string(config.model_args)}: {e}") from None


def _indices(n_available: int, limit: int | None, split: str) -> list[int]:
    if n_available == 0:
        raise AboError(f"the {split} split is empty")
    return list(range(min(limit, n_available) if limit else n_available))


def projection(config: OptimizeConfig, n_dev: int, n_train: int, n_test: int) -> dict:
    """Most calls the run can make (before format retries; caches and early stops make it fewer)."""
    from lm_eval_abo.optimizers import METHODS

    method = METHODS[config.method]
    rows = []
    for r in range(config.rounds + 1):
        calls, candidates = method.projected(config.method_args, config.beam, initial=r == 0)
        candidates += r == 0  # the baseline
        train = 0 if r == 0 or not getattr(method, "uses_errors", True) else config.beam * min(config.minibatch, n_train)
        rows.append({"round": r, "optimizer_calls": calls, "target_requests": train + candidates * n_dev})
    total_optimizer = sum(r["optimizer_calls"] for r in rows)
    if config.max_optimizer_calls is not None:
        total_optimizer = min(total_optimizer, config.max_optimizer_calls)
    return {
        "rounds": rows, "test_requests": n_test,
        "optimizer_calls": total_optimizer,
        "target_requests": sum(r["target_requests"] for r in rows) + n_test,
    }


class Run:
    """The files of one run directory: <output>/<task>/<method>/."""

    def __init__(self, config: OptimizeConfig):
        self.dir = Path(config.output) / config.task / config.method
        self.artifact = self.dir / "best.yaml"
        self.state = self.dir / "state.json"
        self.report = self.dir / "report.md"
        self.results = self.dir / "results"


@dataclass
class Session:
    """A task ready to optimize: its splits, the loaded target behind the lm-eval bridge, the optimizer."""

    config: OptimizeConfig
    manager: object  # lm-eval TaskManager
    train_pool: list[int]  # train examples the run may use
    dev_indices: list[int]  # dev examples candidates are scored on
    n_test: int  # test examples of the final evaluation
    bridge: object = None  # scoring.Bridge, once the target is loaded
    llm: object = None  # llm.OptimizerLLM

    def context(self, params: dict | None = None):
        from lm_eval_abo.optimizers.base import Context

        params = self.config.method_args if params is None else params
        return Context(llm=self.llm, bridge=self.bridge, params=params, seed=self.config.seed, train_pool=self.train_pool)

    def split_ids(self) -> dict[str, list[str]]:
        docs = {split: self.bridge.docs(split) for split in ("train", "dev")}
        return {"train": [docs["train"][i]["id"] for i in self.train_pool], "dev": [docs["dev"][i]["id"] for i in self.dev_indices]}


def plan_session(config: OptimizeConfig) -> Session:
    """The task and its split sizes, without loading any model (enough for a dry run)."""
    from lm_eval_abo.scoring import quiet_lm_eval

    _model_class(config)
    manager = _task_manager(config)
    if config.task not in manager.task_index:
        raise AboError(f"unknown task {config.task!r}; see `lm-eval-abo tasks` (or add --include_path)")
    with quiet_lm_eval(not config.verbose):
        task = manager.load([config.task])["tasks"][config.task]
    sizes = {split: len(task.dataset[getattr(task.config, key)]) for split, key in
             (("train", "training_split"), ("dev", "validation_split"), ("test", "test_split"))}
    n_test = min(config.test_limit, sizes["test"]) if config.test_limit else sizes["test"]
    if n_test == 0:
        raise AboError("the test split is empty")
    return Session(config, manager, _indices(sizes["train"], config.train_limit, "train"),
                   _indices(sizes["dev"], config.dev_limit, "dev"), n_test)


def open_session(config: OptimizeConfig, lm=None) -> Session:
    """Load the target (unless one is given: a model loads once per process) and the optimizer."""
    from lm_eval_abo.llm import OptimizerLLM
    from lm_eval_abo.scoring import Bridge

    session = plan_session(config)
    session.llm = OptimizerLLM(  # first: a bad --optimizer fails before the target loads
        config.optimizer, config.optimizer_args,
        cache_dir=embedded.cache_dir() / "optimizer" if config.optimizer_cache == "default" else config.optimizer_cache,
        max_calls=config.max_optimizer_calls, max_cost=config.max_cost, concurrency=config.concurrency,
    )
    session.bridge = Bridge(
        lm or _load_target(config), config.task, session.manager, gen_kwargs=config.gen_kwargs,
        use_cache=_target_cache(config), system_instruction=config.system_instruction,
        apply_chat_template=config.apply_chat_template, fewshot_as_multiturn=config.fewshot_as_multiturn,
        quiet=not config.verbose,
    )
    return session


def optimize(config: OptimizeConfig, out=None, lm=None) -> Outcome | None:
    """Run the search and the final test evaluation; returns None for a dry run.
    `out` receives the lines to show (default: printed above any progress bars); `lm` is an
    already loaded lm-eval model to reuse."""
    from tqdm import tqdm

    from lm_eval_abo.optimizers import METHODS
    from lm_eval_abo.optimizers.search import Search

    out = out or tqdm.write
    config = config.resolved()
    run = Run(config)
    state = _resume_state(config, run, out)
    planned = plan_session(config)
    out(report.projection_text(config, projection(config, len(planned.dev_indices), len(planned.train_pool), planned.n_test)))
    if config.dry_run:
        return None
    run.dir.mkdir(parents=True, exist_ok=True)  # an output that cannot be made fails now, not after a round

    started = time.time()
    session = open_session(config, lm)
    bridge, method = session.bridge, METHODS[config.method]
    splits = session.split_ids()
    dev_docs = bridge.docs("dev")

    def artifact_of(search_state, prompt=None) -> store.Artifact:
        best = search_state.best
        return store.Artifact(
            task=config.task, method=config.method, prompt=prompt or best.prompt,
            target={"model": config.model, "model_args": redact_arg_string(config.model_args)},
            optimizer={"model": config.optimizer, "args": redact_args(config.optimizer_args)},
            scores={"dev": {"metric": bridge.metric_key, "value": best.dev, "stderr": best.dev_stderr, "n": best.dev_n},
                    "baseline_dev": {"metric": bridge.metric_key, "value": search_state.nodes[0].dev, "n": search_state.nodes[0].dev_n}},
            splits=dict(splits), trace=search_state.trace,
            usage={"optimizer": search_state.usage.to_dict(), "target_requests": search_state.target_requests,
                   "seconds": round(time.time() - started, 1), **_phase_seconds(search_state.trace), "stopped": search_state.stopped},
            templates={name: metaprompts.template_sha256(name) for name in method.templates},
            settings={"rounds": config.rounds, "beam": config.beam, "minibatch": config.minibatch, "method_args": config.method_args,
                      "seed": config.seed, "metadata": redact_args(config.metadata), "gen_kwargs": config.gen_kwargs},
        )

    def checkpoint(search_state, record) -> None:
        write_json(run.state, {"config": config.fingerprint(), "state": search_state.to_dict()})
        if search_state.beam:
            store.save(artifact_of(search_state), run.artifact)
            write_text_atomic(run.report, report.run_report(config, search_state, dev_docs, bridge))

    def announce(record) -> None:
        out(report.round_row(record))
        for table in report.diagnosis_tables(record):
            out(table)

    out(report.round_header())
    search = Search(method, session.context(), config.beam, session.dev_indices, config.minibatch, config.patience)
    try:
        state = search.run(config.rounds, state, checkpoint, announce)
    except TargetFailed as e:
        raise AboError(f"{e}; {_saved_rounds(run)}") from e
    if not state.beam:
        raise AboError(f"stopped before any prompt was scored: {state.stopped}")
    if state.stopped:
        out(f"search stopped early: {state.stopped}; the best prompt so far is kept")

    store.save(artifact_of(state), run.artifact)  # what the test evaluation reads, also after a resume
    try:
        test = evaluate_on_test(session, run.artifact, run.results)
    except TargetFailed as e:
        raise AboError(f"{e} during the test evaluation; {_saved_rounds(run)}") from e
    final = artifact_of(state)
    final.scores["test"] = {**test["score"], "results_file": str(test["results"].relative_to(run.dir))}
    final.splits["test"] = test["ids"]
    final.usage["test_requests"] = test["requests"]
    final.usage["test_seconds"] = test["seconds"]
    final.usage["target_requests"] = state.target_requests + test["requests"]
    store.save(final, run.artifact)
    write_text_atomic(run.report, report.run_report(config, state, dev_docs, bridge, final))
    out(test["table"])
    out(report.final_text(final, run.artifact, test["results"]))
    return Outcome(run.dir, run.artifact, test["results"], final)


def _phase_seconds(trace: list[dict]) -> dict:
    """The search's wall time by phase, summed over its rounds."""
    return {key: round(sum(r.get(key, 0.0) for r in trace), 1) for key in ("optimizer_seconds", "target_seconds")}


def _saved_rounds(run: Run) -> str:
    """What a failed run kept, and how to continue it."""
    if not run.state.exists():
        return "no round was completed"
    done = read_json(run.state)["state"]["round"]
    saved = f"rounds 0-{done} are" if done else "round 0 is"
    return f"{saved} saved in {run.dir}; rerun with --resume to continue from there"


def _target_cache(config: OptimizeConfig) -> str | None:
    """lm-eval's cache keys requests by prompt only, so each target model gets its own file."""
    if not config.use_cache:
        return None
    import hashlib

    identity = hashlib.sha256(f"{config.model}|{config.model_args}".encode()).hexdigest()[:12]
    return f"{config.use_cache}_{identity}"


def _resume_state(config: OptimizeConfig, run: Run, out):
    from lm_eval_abo.optimizers.search import SearchState

    if not run.state.exists():
        if config.resume:
            out(f"nothing to resume in {run.dir}: starting a new run")
        return None
    if not config.resume:
        if config.dry_run:
            return None
        raise AboError(f"{run.dir} holds an earlier run; pass --resume to continue it, or choose another --output")
    saved = read_json(run.state)
    differs = [k for k, v in config.fingerprint().items() if saved["config"].get(k) != v]
    if differs:
        raise AboError(f"--resume: the run in {run.dir} was made with other settings ({', '.join(differs)})")
    state = SearchState.from_dict(saved["state"])
    state.stopped = None  # e.g. a budget stop: resuming with a larger budget continues
    out(f"resuming {run.dir} after round {state.round}")
    return state


def evaluate_on_test(session: Session, artifact: Path, results_dir: Path) -> dict:
    """An artifact on the test split, once, through lm-eval exactly as `lm_eval --metadata` runs it;
    lm-eval's results JSON and samples go to `results_dir`."""
    from lm_eval import simple_evaluate
    from lm_eval.loggers import EvaluationTracker
    from lm_eval.utils import make_table

    from lm_eval_abo.scoring import quiet_lm_eval, target_calls

    config, bridge = session.config, session.bridge
    manager = _task_manager(config, abo_prompt=str(artifact))
    tracker = EvaluationTracker(output_path=str(results_dir))
    before, started = bridge.target_requests, time.time()
    with quiet_lm_eval(not config.verbose), target_calls():
        results = simple_evaluate(
            model=bridge.counter, model_args=redact_arg_string(config.model_args), tasks=[config.task],
            task_manager=manager, limit=session.n_test, log_samples=True, use_cache=_target_cache(config),
            gen_kwargs=config.gen_kwargs or None, system_instruction=config.system_instruction,
            apply_chat_template=config.apply_chat_template, fewshot_as_multiturn=config.fewshot_as_multiturn,
            evaluation_tracker=tracker, bootstrap_iters=1000, random_seed=config.seed,
        )
    samples = results.pop("samples")
    tracker.save_results_aggregated(results=results, samples=samples)
    tracker.save_results_samples(task_name=config.task, samples=samples[config.task])
    found = sorted(Path(results_dir).rglob("results_*.json"), key=lambda p: p.stat().st_mtime)
    metrics = results["results"][config.task]
    key = bridge.metric_key
    return {
        "results": found[-1],
        "score": {"metric": key, "value": _number(metrics.get(key)), "stderr": _number(metrics.get(key.replace(",", "_stderr,", 1))),
                  "n": int(results["n-samples"][config.task]["effective"])},
        "ids": list(dict.fromkeys(row["doc"]["id"] for row in samples[config.task])),
        "requests": bridge.target_requests - before,
        "seconds": round(time.time() - started, 1),
        "table": make_table(results),
    }


def _number(value) -> float | None:
    """A metric from lm-eval's results (numpy scalars, or "N/A" where no stderr was computed) as a float."""
    try:
        return float(value)
    except (TypeError, ValueError):
        return None
