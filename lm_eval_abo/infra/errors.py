"""The one error type for problems a user can fix (bad input, missing data or model files)."""


class AboError(SystemExit, Exception):
    """A user-facing problem, reported as one line with no traceback.

    It is an `Exception`, so callers catch it as usual; it is also a `SystemExit`, because the stock
    `lm_eval` CLI catches nothing: raised while lm-eval builds an abo_* task (missing dataset, bad
    artifact), Python then prints just the message and exits non-zero instead of a long traceback.
    """

    def __init__(self, message: str):
        super().__init__(f"lm-eval-abo: {message}")
        self.message = message

    def __str__(self) -> str:
        return self.message


def one_line(error: Exception) -> str:
    """An error as one line: a user error as its message; the environment's (OSError: a full disk, a folder
    that cannot be written) with the file; anything else is a bug, with the way to its traceback."""
    if isinstance(error, AboError):
        return str(error)
    if isinstance(error, OSError) and error.strerror:
        return f"{error.strerror}: {error.filename}" if error.filename else error.strerror
    lines = str(error).strip().splitlines()
    return f"unexpected {type(error).__name__}: {lines[0] if lines else ''} (rerun with --debug for the traceback)"
