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
