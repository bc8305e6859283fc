"""`lm-eval-abo`: the command line. The flags of the settings come from their fields (`config.py`)."""

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
    from lm_eval_abo.embedded.serve import serve_forever

    ports = args.port or [None] * len(args.model)
    if len(ports) != len(args.model):
        raise AboError("give one --port per --model, or none")
    serve_forever(args.model, ports)


def config_from(args, **fixed):
    """The OptimizeConfig of a command's flags."""
    from lm_eval_abo.config import from_flags

    return from_flags(args, **fixed)


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
    paper_table(config_from(args, task=tasks[0] if tasks else ""), tasks, methods, seeds=args.seeds)


def cmd_run(argv: list[str]) -> None:
    """lm-eval's own `run`, with the abo_* tasks on the include path and the embedded model registered."""
    import lm_eval.loggers
    import lm_eval.models  # noqa: F401  (before the plugin registers its model)
    from lm_eval._cli import HarnessCLI
    from lm_eval.utils import setup_logging

    import lm_eval_abo.embedded.backend  # noqa: F401  (registers --model abo-embedded)
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
    from lm_eval_abo.embedded.models import DEFAULT_OPTIMIZER, DEFAULT_TARGET, MODELS

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


def add_commands(sub) -> None:
    from lm_eval_abo.config import add_flags
    from lm_eval_abo.optimizers import METHODS
    from lm_eval_abo.table import APO_METHODS

    methods = {"choices": sorted(METHODS)}
    p = sub.add_parser(
        "optimize", help="optimize a task's prompt (APO methods or ABO), scored by lm-eval",
        description="Run a prompt-optimization method on any lm-eval task: candidates are scored by lm-eval on train/dev, "
        "the best prompt is saved as <output>/<task>/<method>/best.yaml, evaluated once on test beside the baseline, and "
        "written as a plain lm-eval task (<task>_abo.yaml) beside it.",
    )
    add_flags(p, "optimize", task={"required": True}, method=methods)
    p.set_defaults(func=cmd_optimize)

    p = sub.add_parser("diagnose", help="the paper's studies: reflection sensitivity, refinement fix/break rates")
    p.add_argument("study", choices=["reflection", "refinement"])
    p.add_argument("--prompt", help="artifact whose prompt is studied (default: the task's baseline prompt)")
    p.add_argument("--samples", type=int, default=3, help="reflection: reflections per error set (default 3)")
    p.add_argument("--errors", type=int, default=4, help="reflection: examples shown per reflection (default 4)")
    p.add_argument("--other-task", dest="other_task", help="reflection: the task whose errors are the off-task set")
    add_flags(p, "diagnose", task={"required": True},
                 method={**methods, "default": "apo", "help": "refinement: the method making the step (default: apo)"})
    p.set_defaults(func=cmd_diagnose)

    p = sub.add_parser("paper-table", help="the paper's Table 2 layout for one target/optimizer pair")
    p.add_argument("--tasks", default="abo_object_counting_synth", help="comma-separated tasks")
    p.add_argument("--apo-methods", dest="apo_methods", default=",".join(APO_METHODS),
                   help="APO methods compared for the 'best APO method' row (default: all five)")
    p.add_argument("--seeds", type=int, default=1, help="repeat the table with this many seeds and report each row's spread")
    add_flags(p, "paper-table", patience={
        "default": 0, "help": "every method stops when its best dev score has not improved for this many rounds "
        "(default 0: every method runs every round, so the budgets compare)"},
        rounds={"help": "rounds of every method (default 2: ABO's rows are steps 0-2, as in the paper)"})
    p.set_defaults(func=cmd_paper_table)


def cmd_export_promptfoo(args) -> None:
    from lm_eval_abo.config import HarnessSettings, from_flags
    from lm_eval_abo.promptfoo.export import ExportOptions, export

    options = ExportOptions(split=args.split, limit=args.limit, provider=args.provider, api_base=args.api_base,
                            api_key_env=args.api_key_env)
    config = export(args.artifact, args.output, options, from_flags(args, HarnessSettings))
    print(f"wrote {args.output}: {len(config['tests'])} tests, provider {config['providers'][0]['id']}")


def cmd_export_lm_eval(args) -> None:
    from lm_eval_abo.config import HarnessSettings, from_flags
    from lm_eval_abo.optimize import export_artifact

    path, checked = export_artifact(args.artifact, args.output, args.name, from_flags(args, HarnessSettings))
    print(f"wrote {path} ({checked} test documents, requests checked against the task with the prompt)")
    print(f"  run: lm_eval --include_path {path.parent} --tasks {path.stem} --model ...")


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

    outcome = check(args.results, args.baseline, max_drop=args.max_drop, stderr_aware=args.stderr_aware, paired=args.paired)
    print(outcome.markdown)
    return 1 if outcome.regressed else 0


def add_ecosystem_commands(sub) -> None:
    """Exports (lm-eval, promptfoo), the promptfoo import, leaderboards and the CI regression gate."""
    from lm_eval_abo.config import HarnessSettings, add_flags

    p = sub.add_parser("export", help="export an optimized prompt (a plain lm-eval task, or a promptfoo config)")
    formats = p.add_subparsers(dest="format", metavar="FORMAT", required=True)
    p = formats.add_parser("lm-eval", help="a plain lm-eval task that the stock lm_eval runs, without this plugin",
                           description="Write the artifact's prompt as a plain lm-eval task on the run's held-out test "
                           "documents (the file an optimize run writes beside best.yaml), and check that lm-eval builds "
                           "from it the requests it builds from the task with the prompt.")
    p.add_argument("artifact", help="an artifact (e.g. runs/<task>/<method>/best.yaml)")
    p.add_argument("-o", "--output", help="directory to write into (default: the artifact's)")
    p.add_argument("--name", help="task name (default: <task>_abo)")
    add_flags(p, "export", HarnessSettings, **{k: {"help": "(default: the run's) " + h} for k, h in (
        ("metadata", "task knobs as JSON or key=value"), ("gen_kwargs", "generation settings, as lm_eval --gen_kwargs"))})
    p.set_defaults(func=cmd_export_lm_eval)

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
    add_flags(p, "export", HarnessSettings, metadata={"help": "task knobs as JSON or key=value (default: those of the "
                 "optimize run)"}, gen_kwargs={"help": "generation settings over those of the optimize run, as lm_eval "
                 "--gen_kwargs"})
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
    p.add_argument("--paired", action="store_true", help="where both sides have lm-eval's per-sample results "
                   "(--log_samples), also require the drop to be significant on a paired test over the same examples")
    p.set_defaults(func=cmd_check)


def main(argv: list[str] | None = None) -> int:
    from lm_eval_abo.redact import flag_values, scrubbed_output, secret_values

    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    argv = [a for a in argv if a != "--debug"]  # also valid after `run`, whose flags are lm-eval's
    # API keys given as flags or environment variables never reach the terminal or a log
    with scrubbed_output(secret_values(*flag_values(argv, SECRET_FLAGS))):
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
            from lm_eval_abo.embedded.models import DEFAULT_OPTIMIZER, DEFAULT_TARGET

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
