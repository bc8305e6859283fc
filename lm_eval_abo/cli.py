"""`lm-eval-abo`: the parser and the dispatch; the commands themselves are in `commands/`, one module per
family, and the flags of the settings come from their fields (`config.py`)."""

from __future__ import annotations

import argparse
import os
import sys
import traceback

# Offline by default: no price-map download on `import litellm`, no hub lookups for cached data.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

from lm_eval_abo.commands import compare, ecosystem, harness, runs  # noqa: E402
from lm_eval_abo.infra.errors import AboError, one_line  # noqa: E402

SECRET_FLAGS = ("--model_args", "--optimizer_args", "-a")  # flags whose values may hold API keys


class Parser(argparse.ArgumentParser):
    """argparse with its errors as one line (the usage is in --help)."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="lm-eval-abo",
        description="Automatic Behavior Optimization (ABO) and reflection-based prompt optimizers for lm-eval.",
        epilog="`lm-eval-abo run ...` takes every flag of `lm-eval run`, with the abo_* tasks included.",
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for family in (harness, runs, compare, ecosystem):
        family.add(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    from lm_eval_abo.infra.redact import flag_values, scrubbed_output, secret_values

    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    argv = [a for a in argv if a != "--debug"]  # also valid after `run`, whose flags are lm-eval's
    # API keys given as flags or environment variables never reach the terminal or a log
    with scrubbed_output(secret_values(*flag_values(argv, SECRET_FLAGS))):
        return _main(argv, debug)


def _main(argv: list[str], debug: bool) -> int:
    try:
        if argv and argv[0] == "run":
            harness.cmd_run(argv[1:])
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
        message, code = one_line(e), 2 if isinstance(e, (AboError, OSError)) else 1
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


if __name__ == "__main__":
    sys.exit(main())
