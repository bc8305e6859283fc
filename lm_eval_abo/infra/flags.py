"""How a setting is written on the command line: `Flag`, the metadata of a dataclass field that makes its
flag and documents it, the parsers of flag values (`k=v` pairs, lm-eval's --gen_kwargs, prices), and
`given`, which applies `k=v` values to a frozen dataclass of such fields (a method's parameters) with one
line per mistake. A leaf: the settings (`config.py`) and the methods' parameters both build on it."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import MISSING, dataclass, field, fields, replace

from lm_eval_abo.infra.errors import AboError

RUNS = ("optimize", "diagnose", "paper-table", "compare")  # the commands that run a search or a study
ONE_TARGET = ("diagnose", "paper-table")  # those with one target (optimize and compare take one --model per target)
EVALUATES = ("transfer",)  # the commands that evaluate finished prompts through lm-eval
# Keys of --optimizer_args that set the optimizer client rather than go to litellm (litellm's names where it
# has one); a resumed run may change them
CLIENT_ARGS = {"timeout": "seconds per call", "num_retries": "retries after the first try",
               "retry_backoff": "first backoff in seconds, doubling per retry"}


@dataclass(frozen=True)
class Flag:
    """How a setting appears on the command line."""

    help: str
    name: str | None = None  # default: --<field name with dashes>
    parse: Callable[[str, str], object] | None = None  # (text, flag name) -> value
    commands: tuple[str, ...] = RUNS  # the commands that take it
    preset: bool = False  # a preset sets it (the help shows the presets' values)
    off: str | None = None  # a second flag that sets the setting to None
    resume: bool = False  # a resumed run must have the same value
    secret: bool = False  # may hold API keys: masked wherever it is written
    choices: tuple[str, ...] = ()  # the values a text setting takes


def flag(help: str, default=MISSING, default_factory=MISSING, **kwargs):
    return field(default=default, default_factory=default_factory, metadata={"flag": Flag(help, **kwargs)})


def given(base, values: dict, what: str):
    """`base` (a frozen dataclass whose fields are flags) with `values` given over it: a text field takes one
    of its choices, a field whose default is a float any number of at least 0, any other a whole number of at
    least 0; one line names the first mistake."""
    known = [f.name for f in fields(base)]
    unknown = set(values) - set(known)
    if unknown:
        raise AboError(f"unknown --method-args for {what}: {', '.join(sorted(unknown))}; known: {', '.join(known)}")
    for f in fields(base):
        if f.name not in values:
            continue
        value, choices = values[f.name], f.metadata["flag"].choices
        if choices:
            if value not in choices:
                raise AboError(f"method argument {f.name} must be one of {', '.join(choices)}, got {value!r}")
        elif isinstance(f.default, float):
            if not isinstance(value, (int, float)) or isinstance(value, bool) or value < 0:
                raise AboError(f"method argument {f.name} must be a number of at least 0, got {value!r}")
            values = {**values, f.name: float(value)}
        elif not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise AboError(f"method argument {f.name} must be a whole number of at least 0, got {value!r}")
    return replace(base, **values)


def parse_pairs(text: str | None, flag: str = "value") -> dict:
    """`k=v,k2=v2` or a JSON object, as lm-eval reads --model_args and --metadata: numbers and booleans
    become values."""
    if not text:
        return {}
    if isinstance(text, dict):
        return text
    if text.lstrip().startswith("{"):
        try:
            value = json.loads(text)
        except json.JSONDecodeError as e:
            raise AboError(f"{flag}: not valid JSON ({e.msg})") from None
        if not isinstance(value, dict):
            raise AboError(f"{flag}: expected a JSON object")
        return value
    bad = [part for part in text.split(",") if part.strip() and "=" not in part]
    if bad:  # lm-eval would pass such a typo on as a flag with an empty value
        raise AboError(f"{flag}: expected key=value pairs separated by commas, got {bad[0]!r}")
    from lm_eval.utils import simple_parse_args_string

    try:
        return simple_parse_args_string(text)
    except (ValueError, SyntaxError):
        raise AboError(f"{flag}: expected key=value pairs separated by commas, got {text!r}") from None


def parse_gen_kwargs(text: str | None, flag: str = "--gen_kwargs") -> dict:
    """--gen_kwargs as `parse_pairs` reads it, checked as lm-eval's backends read it (stop sequences as
    text or a list, whole token counts, a number for the temperature), so a bad value fails now rather
    than at the first request to the target."""
    kwargs = parse_pairs(text, flag)
    if kwargs:
        from lm_eval.models.utils import handle_stop_sequences, normalize_gen_kwargs

        try:
            handle_stop_sequences(kwargs.get("until"), None)
            normalize_gen_kwargs(kwargs)
        except (TypeError, ValueError) as e:
            raise AboError(f"{flag} {text}: lm-eval cannot use it ({e}); e.g. {flag} max_gen_toks=256,temperature=0,"
                           "do_sample=false") from None
    return kwargs


def parse_price(text, flag: str = "price") -> tuple[float, float] | None:
    """`IN,OUT` in US dollars per million tokens."""
    if text is None or isinstance(text, tuple):
        return text
    parts = str(text).split(",")
    try:
        values = tuple(float(p) for p in parts)
    except ValueError:
        values = ()
    if len(values) != 2 or min(values) < 0:
        raise AboError(f"{flag}: expected IN,OUT in US dollars per million tokens (e.g. 0.5,1.5), got {text!r}")
    return values
