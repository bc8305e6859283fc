"""`lm-eval-abo`: the command line."""

from __future__ import annotations

import argparse
import os
import sys

# Offline by default: no price-map download on `import litellm`, no hub lookups for cached data.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

from lm_eval_abo.errors import AboError  # noqa: E402


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


def cmd_run(argv: list[str]) -> None:
    """lm-eval's own `run`, with the abo_* tasks on the include path and the embedded model registered."""
    import lm_eval.models  # noqa: F401  (before the plugin registers its model)
    from lm_eval._cli import HarnessCLI
    from lm_eval.utils import setup_logging

    import lm_eval_abo.embedded  # noqa: F401  (registers --model abo-embedded)
    from lm_eval_abo.tasks import tasks_dir

    setup_logging()
    harness = HarnessCLI()
    sys.argv = ["lm-eval-abo run", "run", *argv]
    args = harness.parse_args()
    args.include_path = [str(tasks_dir()), *([args.include_path] if args.include_path else [])]
    harness.execute(args)


def build_parser() -> argparse.ArgumentParser:
    from lm_eval_abo.embedded import DEFAULT_OPTIMIZER, DEFAULT_TARGET, MODELS

    parser = argparse.ArgumentParser(
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
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
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
        args.func(args)
        return 0
    except AboError as e:
        if debug:
            raise
        print(f"lm-eval-abo: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("lm-eval-abo: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
