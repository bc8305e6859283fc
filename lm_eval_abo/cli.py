"""`lm-eval-abo`: the command line."""

from __future__ import annotations

import argparse
import os
import sys
import traceback

# Offline by default: no price-map download on `import litellm`, no hub lookups for cached data.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

from lm_eval_abo.errors import AboError  # noqa: E402

SECRET_FLAGS = ("--model_args", "--optimizer_args", "-a")  # flags whose values may hold API keys


class Parser(argparse.ArgumentParser):
    """argparse with its errors as one line (the usage is in --help)."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message}\n")


def cmd_tasks_path(args) -> None:
    from lm_eval_abo.tasks import tasks_dir

    print(tasks_dir())


def cmd_tasks(args) -> None:
    from lm_eval_abo.tasks import list_tasks

    for name, about in list_tasks().items():
        print(f"{name:36} {about}")


def cmd_serve(args) -> None:
    from lm_eval_abo.serve import serve_forever

    ports = args.port or [None] * len(args.model)
    if len(ports) != len(args.model):
        raise AboError("give one --port per --model, or none")
    serve_forever(args.model, ports)


def parse_pairs(text: str | None, flag: str) -> dict:
    """`k=v,k2=v2` (or a JSON object) into a dict; numbers and booleans become values, like lm-eval."""
    import json

    if not text:
        return {}
    if text.lstrip().startswith("{"):
        try:
            value = json.loads(text)
        except json.JSONDecodeError as e:
            raise AboError(f"{flag}: not valid JSON ({e.msg})") from None
        if not isinstance(value, dict):
            raise AboError(f"{flag}: expected a JSON object")
        return value
    from lm_eval.utils import simple_parse_args_string

    try:
        return simple_parse_args_string(text)
    except (ValueError, SyntaxError):
        raise AboError(f"{flag}: expected key=value pairs separated by commas, got {text!r}") from None


def config_from(args, **fixed):
    """The OptimizeConfig of a command's flags (flags a command lacks keep their defaults)."""
    from lm_eval_abo.optimize import OptimizeConfig

    given = {
        "task": getattr(args, "task", None), "method": getattr(args, "method", "abo"), "model": args.model,
        "model_args": args.model_args, "optimizer": args.optimizer,
        "optimizer_args": parse_pairs(args.optimizer_args, "--optimizer_args"), "preset": args.preset,
        "rounds": args.rounds, "beam": args.beam, "minibatch": args.minibatch, "train_limit": args.train_limit,
        "dev_limit": args.dev_limit, "test_limit": args.test_limit,
        "method_args": parse_pairs(getattr(args, "method_args", None), "--method-args"),
        "patience": getattr(args, "patience", None), "output": args.output, "resume": getattr(args, "resume", False),
        "max_optimizer_calls": args.max_optimizer_calls, "max_cost": args.max_cost, "use_cache": args.use_cache,
        "optimizer_cache": None if args.no_optimizer_cache else args.optimizer_cache, "seed": args.seed,
        "metadata": parse_pairs(args.metadata, "--metadata"), "include_path": args.include_path or [],
        "gen_kwargs": parse_pairs(args.gen_kwargs, "--gen_kwargs"), "system_instruction": args.system_instruction,
        "apply_chat_template": args.apply_chat_template, "fewshot_as_multiturn": args.fewshot_as_multiturn,
        "batch_size": args.batch_size, "device": args.device, "concurrency": args.concurrency,
        "dry_run": getattr(args, "dry_run", False), "verbose": args.verbose,
    }
    return OptimizeConfig(**{**given, **fixed})


def cmd_optimize(args) -> None:
    from lm_eval_abo.optimize import optimize

    optimize(config_from(args))


def cmd_diagnose(args) -> None:
    from lm_eval_abo import diagnose

    if args.study == "reflection":
        diagnose.reflection_study(config_from(args), args.prompt, samples=args.samples, k=args.errors, other_task=args.other_task)
    else:
        diagnose.refinement_study(config_from(args), args.prompt)


def cmd_paper_table(args) -> None:
    from lm_eval_abo.table import paper_table

    tasks = [t for t in args.tasks.split(",") if t]
    methods = [m for m in args.apo_methods.split(",") if m]
    paper_table(config_from(args, task=tasks[0] if tasks else ""), tasks, methods)


def cmd_run(argv: list[str]) -> None:
    """lm-eval's own `run`, with the abo_* tasks on the include path and the embedded model registered."""
    import lm_eval.loggers
    import lm_eval.models  # noqa: F401  (before the plugin registers its model)
    from lm_eval._cli import HarnessCLI
    from lm_eval.utils import setup_logging

    import lm_eval_abo.embedded  # noqa: F401  (registers --model abo-embedded)
    from lm_eval_abo.redact import redacting_tracker
    from lm_eval_abo.tasks import tasks_dir

    setup_logging()
    harness = HarnessCLI()
    sys.argv = ["lm-eval-abo run", "run", *argv]
    args = harness.parse_args()
    args.include_path = [str(tasks_dir()), *([args.include_path] if args.include_path else [])]
    # lm-eval's run looks the tracker up when it runs: this one keeps model_args secrets out of the results
    lm_eval.loggers.EvaluationTracker = redacting_tracker(lm_eval.loggers.EvaluationTracker)
    try:
        harness.execute(args)
    except (ValueError, TypeError) as e:  # lm-eval reports a bad task, model or model_args this way
        raise AboError(f"{type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''}") from e


def build_parser() -> argparse.ArgumentParser:
    from lm_eval_abo.embedded import DEFAULT_OPTIMIZER, DEFAULT_TARGET, MODELS

    parser = Parser(
        prog="lm-eval-abo",
        description="Automatic Behavior Optimization (ABO) and reflection-based prompt optimizers for lm-eval.",
        epilog="`lm-eval-abo run ...` takes every flag of `lm-eval run`, with the abo_* tasks included.",
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("tasks-path", help="print the directory to pass to lm_eval --include_path")
    p.set_defaults(func=cmd_tasks_path)

    p = sub.add_parser("tasks", help="list the abo_* tasks")
    p.set_defaults(func=cmd_tasks)

    p = sub.add_parser("serve", help="serve the embedded models on 127.0.0.1 for the stock lm_eval CLI and litellm")
    p.add_argument(
        "--model", action="append", choices=sorted(MODELS),
        help=f"model to serve (repeatable; default: {DEFAULT_TARGET} and {DEFAULT_OPTIMIZER})",
    )
    p.add_argument("--port", action="append", type=int, help="port for the matching --model (default: a free port)")
    p.set_defaults(func=cmd_serve)

    sub.add_parser("run", help="evaluate with lm-eval (all `lm-eval run` flags; abo_* tasks and --model abo-embedded available)")
    add_commands(sub)
    add_ecosystem_commands(sub)
    return parser


def add_common_arguments(p) -> None:
    """Flags shared by optimize, diagnose and paper-table: models, sizes, data, caches, lm-eval settings."""
    from lm_eval_abo.optimize import DEFAULT_MODEL, DEFAULT_MODEL_ARGS, DEFAULT_OPTIMIZER, PRESETS

    p.add_argument("--model", default=DEFAULT_MODEL, help=f"target: any lm-eval model backend (default: {DEFAULT_MODEL})")
    p.add_argument("--model_args", default=DEFAULT_MODEL_ARGS, help=f"lm-eval model_args (default: {DEFAULT_MODEL_ARGS})")
    p.add_argument("--optimizer", default=DEFAULT_OPTIMIZER, help=f"optimizer: a litellm model string (default: {DEFAULT_OPTIMIZER})")
    p.add_argument("--optimizer_args", help="key=value pairs for litellm, e.g. api_base=http://...,temperature=1.0; "
                   "timeout= (seconds per call, default 120), num_retries= (default 4) and retry_backoff= (first "
                   "backoff in seconds, default 1) set the client")
    p.add_argument("--preset", default="small", choices=sorted(PRESETS), help="run sizes: small (laptop) or paper (published settings)")
    small, paper = PRESETS["small"], PRESETS["paper"]

    def sized(text: str, key: str) -> str:
        return f"{text} (preset small: {small[key] or 'all'}, paper: {paper[key] or 'all'})"

    p.add_argument("--rounds", type=int, help=sized("optimization rounds after the initial one", "rounds"))
    p.add_argument("--beam", type=int, help=sized("prompts kept per round", "beam"))
    p.add_argument("--minibatch", type=int, help=sized("train examples scored per round to find errors", "minibatch"))
    p.add_argument("--train-limit", dest="train_limit", type=int, help=sized("train examples the run may use", "train_limit"))
    p.add_argument("--dev-limit", dest="dev_limit", type=int, help=sized("dev examples candidates are scored on", "dev_limit"))
    p.add_argument("--test-limit", dest="test_limit", type=int, help=sized("test examples of the final evaluation", "test_limit"))
    p.add_argument("--output", default="runs", help="output directory (default: runs)")
    p.add_argument("--max-optimizer-calls", dest="max_optimizer_calls", type=int, help="stop after this many optimizer calls")
    p.add_argument("--max-cost", dest="max_cost", type=float, help="stop when the optimizer has cost this many US dollars")
    p.add_argument("--use_cache", help="lm-eval's target cache: a path prefix for sqlite files (as lm_eval --use_cache)")
    p.add_argument("--optimizer-cache", dest="optimizer_cache", default="default",
                   help="directory of the optimizer's reply cache (default: ~/.cache/lm-eval-abo/optimizer)")
    p.add_argument("--no-optimizer-cache", dest="no_optimizer_cache", action="store_true", help="do not cache optimizer replies")
    p.add_argument("--seed", type=int, default=1234, help="seed of minibatches, example picks and optimizer sampling")
    p.add_argument("--metadata", help="task knobs as JSON or key=value (as lm_eval --metadata), e.g. '{\"abo_difficulty\": 2}'")
    p.add_argument("--include_path", action="append", help="another directory of abo task YAMLs (repeatable)")
    p.add_argument("--gen_kwargs", help="generation settings for the target, as lm_eval --gen_kwargs")
    p.add_argument("--system_instruction", help="as lm_eval --system_instruction")
    p.add_argument("--apply_chat_template", action="store_true", help="as lm_eval --apply_chat_template")
    p.add_argument("--fewshot_as_multiturn", action="store_true", help="as lm_eval --fewshot_as_multiturn")
    p.add_argument("--batch_size", default=1, help="as lm_eval --batch_size")
    p.add_argument("--device", help="as lm_eval --device")
    p.add_argument("--concurrency", type=int, default=4, help="optimizer calls in flight at once (default 4)")
    p.add_argument("--verbose", action="store_true", help="show lm-eval's own log while scoring")


def add_commands(sub) -> None:
    from lm_eval_abo.optimizers import METHODS
    from lm_eval_abo.table import APO_METHODS

    p = sub.add_parser(
        "optimize", help="optimize a task's prompt (APO methods or ABO), scored by lm-eval",
        description="Run a prompt-optimization method on an abo_* task: candidates are scored by lm-eval on "
        "train/dev, the best prompt is saved as <output>/<task>/<method>/best.yaml and evaluated once on test.",
    )
    p.add_argument("--task", required=True, help="an abo_* task (see `lm-eval-abo tasks`)")
    p.add_argument("--method", default="abo", choices=sorted(METHODS), help="optimization method (default: abo)")
    p.add_argument("--method-args", dest="method_args", help="method parameters as key=value pairs (see README)")
    p.add_argument("--patience", type=int, help="stop when the best dev score has not improved for this many rounds (0: never)")
    p.add_argument("--resume", action="store_true", help="continue the run in the output directory from its last completed round")
    p.add_argument("--dry-run", dest="dry_run", action="store_true", help="print the projected calls and stop")
    add_common_arguments(p)
    p.set_defaults(func=cmd_optimize)

    p = sub.add_parser("diagnose", help="the paper's studies: reflection sensitivity, refinement fix/break rates")
    p.add_argument("study", choices=["reflection", "refinement"])
    p.add_argument("--task", required=True, help="an abo_* task")
    p.add_argument("--prompt", help="artifact whose prompt is studied (default: the task's default prompt)")
    p.add_argument("--method", default="apo", choices=sorted(METHODS), help="refinement: the method making the step (default: apo)")
    p.add_argument("--method-args", dest="method_args", help="refinement: method parameters as key=value pairs")
    p.add_argument("--samples", type=int, default=3, help="reflection: reflections per error set (default 3)")
    p.add_argument("--errors", type=int, default=4, help="reflection: examples shown per reflection (default 4)")
    p.add_argument("--other-task", dest="other_task", help="reflection: the task whose errors are the off-task set")
    add_common_arguments(p)
    p.set_defaults(func=cmd_diagnose)

    p = sub.add_parser("paper-table", help="the paper's Table 2 layout for one target/optimizer pair")
    p.add_argument("--tasks", default="abo_object_counting_synth", help="comma-separated abo_* tasks")
    p.add_argument("--apo-methods", dest="apo_methods", default=",".join(APO_METHODS), help="APO methods compared for the 'best APO method' row")
    p.add_argument("--patience", type=int, default=1, help="APO runs stop when the best dev score has not improved for this many "
                   "rounds (default 1, ABO's own default; 0: every round). ABO always runs every step: each is a row")
    add_common_arguments(p)
    p.set_defaults(func=cmd_paper_table)


def cmd_export_promptfoo(args) -> None:
    from lm_eval_abo.promptfoo.export import ExportOptions, export

    options = ExportOptions(
        split=args.split, limit=args.limit, include_path=args.include_path or [],
        metadata=parse_pairs(args.metadata, "--metadata"), gen_kwargs=parse_pairs(args.gen_kwargs, "--gen_kwargs"),
        provider=args.provider, api_base=args.api_base, api_key_env=args.api_key_env,
        apply_chat_template=args.apply_chat_template, fewshot_as_multiturn=args.fewshot_as_multiturn,
        system_instruction=args.system_instruction,
    )
    config = export(args.artifact, args.output, options)
    print(f"wrote {args.output}: {len(config['tests'])} tests, provider {config['providers'][0]['id']}")


def cmd_import_promptfoo(args) -> None:
    from lm_eval_abo.promptfoo.importer import import_config

    path, imported = import_config(args.config, args.output, args.task_name, args.n_train, args.n_dev)
    task = path.stem
    print(f"wrote {path} ({len(imported.rows)} tests; metric: promptfoo's pass rate over the assertions)")
    if imported.other_prompts:
        print(f"note: the config has {imported.other_prompts + 1} prompts; the first is the task's initial prompt")
    model = imported.lm_eval or {"model": "<backend>", "model_args": "<args>"}
    print(f"  optimize: lm-eval-abo optimize --include_path {args.output} --task {task} --method abo")
    print(f"  evaluate: lm_eval --include_path {args.output} --tasks {task} --model {model['model']} --model_args {model['model_args']}")


def cmd_leaderboard(args) -> None:
    from lm_eval_abo.leaderboard import leaderboard

    board = leaderboard(args.paths, args.output, artifact_dirs=args.artifacts or [])
    print(board.markdown)
    print(f"\nwritten: {', '.join(str(p) for p in board.files)}")


def cmd_check(args) -> int:
    from lm_eval_abo.regression import check

    outcome = check(args.results, args.baseline, max_drop=args.max_drop, stderr_aware=args.stderr_aware)
    print(outcome.markdown)
    return 1 if outcome.regressed else 0


def add_ecosystem_commands(sub) -> None:
    """promptfoo export/import, leaderboards and the CI regression gate."""
    p = sub.add_parser("export", help="export an optimized prompt (promptfoo)")
    formats = p.add_subparsers(dest="format", metavar="FORMAT", required=True)
    p = formats.add_parser("promptfoo", help="a promptfoo config that reproduces lm-eval's prompt and metric",
                           description="Write a promptfoo config for an artifact: the exact prompt lm-eval sends (with "
                           "{{var}} placeholders), the target as a promptfoo provider, the task's examples as tests and "
                           "its answer extraction and metric as assertions.")
    p.add_argument("artifact", help="an artifact (e.g. runs/<task>/<method>/best.yaml)")
    p.add_argument("-o", "--output", default="promptfooconfig.yaml", help="the config to write (default: promptfooconfig.yaml)")
    p.add_argument("--split", default="test", choices=["train", "dev", "test"], help="examples to export as tests (default: test)")
    p.add_argument("--limit", type=int, help="the first N examples of the split (as lm_eval --limit)")
    p.add_argument("--provider", help="promptfoo provider id (default: mapped from the artifact's target model)")
    p.add_argument("--api-base", dest="api_base", help="OpenAI-compatible server base URL, e.g. http://127.0.0.1:8000/v1")
    p.add_argument("--api-key-env", dest="api_key_env", help="environment variable with the API key (default: OPENAI_API_KEY)")
    p.add_argument("--include_path", action="append", help="directory of the task's YAML, for tasks outside the package")
    p.add_argument("--metadata", help="task knobs as JSON or key=value (default: those of the optimize run)")
    p.add_argument("--gen_kwargs", help="generation settings over those of the optimize run, as lm_eval --gen_kwargs")
    p.add_argument("--apply_chat_template", action="store_true", help="export chat messages, as lm_eval --apply_chat_template")
    p.add_argument("--fewshot_as_multiturn", action="store_true", help="as lm_eval --fewshot_as_multiturn")
    p.add_argument("--system_instruction", help="as lm_eval --system_instruction")
    p.set_defaults(func=cmd_export_promptfoo)

    p = sub.add_parser("import", help="import a task from another tool (promptfoo)")
    formats = p.add_subparsers(dest="format", metavar="FORMAT", required=True)
    p = formats.add_parser("promptfoo", help="a promptfoo config as an abo task (data, metric, initial prompt)",
                           description="Turn a promptfoo config into an lm-eval task directory: tests become the data "
                           "(seeded train/dev/test), assertions the metric, the first prompt the initial prompt.")
    p.add_argument("config", help="promptfooconfig.yaml")
    p.add_argument("-o", "--output", required=True, help="task directory to write (pass it as --include_path)")
    p.add_argument("--task-name", dest="task_name", help="task name (default: abo_pf_<config file name>)")
    p.add_argument("--n-train", dest="n_train", type=int, help="train examples (default: 40%% of the tests)")
    p.add_argument("--n-dev", dest="n_dev", type=int, help="dev examples (default: 20%% of the tests)")
    p.set_defaults(func=cmd_import_promptfoo)

    p = sub.add_parser("leaderboard", help="method x task x model tables and plots from lm-eval results",
                       description="Tables (markdown, CSV) and a self-contained HTML page with plots from lm-eval "
                       "results files, joined to the artifacts that made them.")
    p.add_argument("paths", nargs="+", help="lm-eval results_*.json files or directories holding them")
    p.add_argument("-o", "--output", default="leaderboard", help="directory for leaderboard.md/.csv/.html (default: leaderboard)")
    p.add_argument("--artifacts", action="append", help="another directory to search for artifacts (repeatable)")
    p.set_defaults(func=cmd_leaderboard)

    p = sub.add_parser("check", help="CI gate: exit 1 when new lm-eval results regress from a baseline",
                       description="Compare lm-eval results with a baseline per task and metric; print a markdown "
                       "table for a pull-request comment; exit 1 on a regression.")
    p.add_argument("--results", required=True, help="new lm-eval results (a results_*.json or a directory)")
    p.add_argument("--baseline", required=True, help="baseline lm-eval results (a results_*.json or a directory)")
    p.add_argument("--max-drop", dest="max_drop", type=float, default=0.02, help="largest allowed drop (default 0.02)")
    p.add_argument("--stderr-aware", dest="stderr_aware", action="store_true",
                   help="also require the drop to exceed 1.96 x the combined standard error")
    p.set_defaults(func=cmd_check)


def _flag_values(argv: list[str], flags) -> list[str]:
    """The values given to `flags` (`--flag v1 v2` or `--flag=v`), without parsing the command."""
    found, taking = [], False
    for arg in argv:
        name, eq, value = arg.partition("=")
        if arg.startswith("-"):
            taking = arg in flags
            if eq and name in flags:
                found.append(value)
        elif taking:
            found.append(arg)
    return found


def main(argv: list[str] | None = None) -> int:
    from lm_eval_abo.redact import scrubbed_output, secret_values

    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    argv = [a for a in argv if a != "--debug"]  # also valid after `run`, whose flags are lm-eval's
    # API keys given as flags or environment variables never reach the terminal or a log
    with scrubbed_output(secret_values(*_flag_values(argv, SECRET_FLAGS))):
        return _main(argv, debug)


def _main(argv: list[str], debug: bool) -> int:
    try:
        if argv and argv[0] == "run":
            cmd_run(argv[1:])
            return 0
        args = build_parser().parse_args(argv)
        if args.command is None:
            build_parser().print_help()
            return 2
        if args.command == "serve" and not args.model:
            from lm_eval_abo.embedded import DEFAULT_OPTIMIZER, DEFAULT_TARGET

            args.model = [DEFAULT_TARGET, DEFAULT_OPTIMIZER]
        return args.func(args) or 0
    except KeyboardInterrupt:
        print("lm-eval-abo: interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # AboError is also a SystemExit, so `raise` would print no traceback
        if debug:
            traceback.print_exc()
        message, code = _one_line(e), 2 if isinstance(e, (AboError, OSError)) else 1
        _release_frames(e)
        print(f"lm-eval-abo: error: {message}", file=sys.stderr)
        return code
    except SystemExit as e:  # argparse (its one-line errors, --help), so main() returns like the script
        return 0 if e.code is None else e.code if isinstance(e.code, int) else 1


def _release_frames(error: BaseException) -> None:
    """Free what the failed calls held (lm-eval's progress bars redraw themselves when closed), so the
    error is the last line printed, not followed by a stale bar."""
    import gc

    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        traceback.clear_frames(error.__traceback__)
        error = error.__cause__ or error.__context__
    gc.collect()


def _one_line(error: Exception) -> str:
    """A user error as its message; the environment's (OSError: a full disk, a folder that cannot be
    written) with the file; anything else is a bug, with the way to its traceback."""
    if isinstance(error, AboError):
        return str(error)
    if isinstance(error, OSError) and error.strerror:
        return f"{error.strerror}: {error.filename}" if error.filename else error.strerror
    lines = str(error).strip().splitlines()
    return f"unexpected {type(error).__name__}: {lines[0] if lines else ''} (rerun with --debug for the traceback)"


if __name__ == "__main__":
    sys.exit(main())
