"""The harness and its models: `tasks`, `tasks-path`, `serve` and `run` (lm-eval's own run command with the
abo_* tasks and the embedded backend)."""

from __future__ import annotations

import sys

from lm_eval_abo.infra.errors import AboError


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


def cmd_run(argv: list[str]) -> None:
    """lm-eval's own `run`, with the abo_* tasks on the include path and the embedded model registered."""
    import lm_eval.loggers
    import lm_eval.models  # noqa: F401  (before the plugin registers its model)
    from lm_eval._cli import HarnessCLI
    from lm_eval.utils import setup_logging

    import lm_eval_abo.embedded.backend  # noqa: F401  (registers --model abo-embedded)
    from lm_eval_abo.infra.redact import redacting_tracker
    from lm_eval_abo.run.targets import missing_package
    from lm_eval_abo.tasks.lookup import task_paths

    setup_logging()
    harness = HarnessCLI()
    sys.argv = ["lm-eval-abo run", "run", *argv]
    args = harness.parse_args()
    args.include_path = task_paths([args.include_path] if args.include_path else [])  # the plugin's, then the user's
    # lm-eval's run looks the tracker up when it runs: this one keeps model_args secrets out of the results
    lm_eval.loggers.EvaluationTracker = redacting_tracker(lm_eval.loggers.EvaluationTracker)
    try:
        harness.execute(args)
    except ImportError as e:  # a backend whose extra is not installed
        raise missing_package(args.model, e) from e
    except (ValueError, TypeError, AssertionError) as e:  # lm-eval reports a bad task, model or model_args so
        raise AboError(f"{type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''}") from e


def add(sub) -> None:
    from lm_eval_abo.embedded.models import DEFAULT_OPTIMIZER, DEFAULT_TARGET, MODELS

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
