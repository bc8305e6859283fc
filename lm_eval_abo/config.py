"""The settings of a run. Each setting is one dataclass field; its metadata also makes its command-line
flag (`cli.py` builds the parsers from it), so a new setting is written once.

`HarnessSettings` holds what lm-eval itself takes (generation settings, chat template, system
instruction, cache, batch size, device, task paths and metadata). `OptimizeConfig` adds the run: task,
method, models, sizes, budgets. `OptimizeConfig.resolved()` fills in the preset and checks the values.
The settings end at the door: the run (`run/session.py`, `run/optimize.py`) unpacks them into the small
frozen values each layer takes, so this module imports only leaves and nothing below the run imports it.
"""

from __future__ import annotations

import re
import types
from dataclasses import MISSING, dataclass, fields, replace
from typing import get_args, get_type_hints

from lm_eval_abo.embedded.models import DEFAULT_OPTIMIZER as EMBEDDED_OPTIMIZER
from lm_eval_abo.embedded.models import DEFAULT_TARGET as EMBEDDED_TARGET
from lm_eval_abo.infra.errors import AboError
from lm_eval_abo.infra.flags import (
    CLIENT_ARGS,
    EVALUATES,
    ONE_TARGET,
    RUNS,
    Flag,
    flag,
    parse_gen_kwargs,
    parse_pairs,
    parse_price,
)
from lm_eval_abo.infra.redact import redact_arg_string, redact_args

DEFAULT_MODEL = "abo-embedded"
DEFAULT_MODEL_ARGS = f"model={EMBEDDED_TARGET}"
DEFAULT_OPTIMIZER = f"embedded/{EMBEDDED_OPTIMIZER}"

# Run sizes: "small" fits a laptop and the embedded models; "paper" follows the published settings
# (ProTeGi: 6 rounds, beam 4, minibatch 64; PromptAgent: beam 3), on the full splits.
PRESETS = {
    "small": {"rounds": 2, "beam": 2, "minibatch": 4, "train_limit": 16, "dev_limit": 10, "test_limit": 30},
    "paper": {"rounds": 6, "beam": 4, "minibatch": 64, "train_limit": None, "dev_limit": None, "test_limit": None},
}


EXPORTS = ("export",)  # the commands that write an artifact out for another tool
HARNESS = RUNS + EXPORTS + EVALUATES  # the commands that build a task with lm-eval's own settings
# how a round's candidates are scored on dev, and when a new prompt displaces the best (`optimizers.selection`)
SELECTION = ("full", "racing")
ACCEPT = ("paired", "score")


@dataclass(kw_only=True)
class HarnessSettings:
    """What lm-eval takes besides the model and the task; names and meanings as `lm_eval run`'s flags."""

    include_path: list[str] = flag("another directory of task YAMLs (repeatable)", default_factory=list,
                                   name="--include_path", commands=HARNESS)
    metadata: dict = flag("task knobs as JSON or key=value (as lm_eval --metadata), e.g. '{\"abo_difficulty\": 2}'",
                          default_factory=dict, name="--metadata", parse=parse_pairs, resume=True, secret=True,
                          commands=HARNESS)
    gen_kwargs: dict = flag("generation settings for the target, as lm_eval --gen_kwargs", default_factory=dict,
                            name="--gen_kwargs", parse=parse_gen_kwargs, resume=True, commands=HARNESS)
    system_instruction: str | None = flag("as lm_eval --system_instruction", default=None, name="--system_instruction",
                                          resume=True, commands=HARNESS)
    apply_chat_template: bool = flag("as lm_eval --apply_chat_template", default=False, name="--apply_chat_template",
                                     resume=True, commands=HARNESS)
    fewshot_as_multiturn: bool = flag("as lm_eval --fewshot_as_multiturn", default=False, name="--fewshot_as_multiturn",
                                      resume=True, commands=HARNESS)
    batch_size: str | int = flag("as lm_eval --batch_size", default=1, name="--batch_size", commands=RUNS + EVALUATES)
    device: str | None = flag("as lm_eval --device", default=None, name="--device", commands=RUNS + EVALUATES)
    use_cache: str | None = flag("lm-eval's target cache: a path prefix for sqlite files (as lm_eval --use_cache)",
                                 default=None, name="--use_cache", commands=RUNS + EVALUATES)

    def recorded(self) -> dict:
        """The settings as an artifact records them (secrets masked)."""
        return {f.name: redacted(getattr(self, f.name)) if f.metadata["flag"].secret else getattr(self, f.name)
                for f in fields(HarnessSettings)}

    def over(self, recorded: dict) -> HarnessSettings:
        """These settings given over those a run recorded: mappings merged, lists joined, switches on if
        either is, anything else this one's where given."""
        merged = {}
        for f in fields(HarnessSettings):
            mine, theirs = getattr(self, f.name), recorded.get(f.name)
            if isinstance(mine, dict):
                merged[f.name] = {**(theirs or {}), **mine}
            elif isinstance(mine, list):
                merged[f.name] = [*(theirs or []), *mine]
            elif isinstance(mine, bool):
                merged[f.name] = mine or bool(theirs)
            else:
                merged[f.name] = theirs if mine == f.default and theirs is not None else mine
        return HarnessSettings(**merged)


@dataclass
class OptimizeConfig(HarnessSettings):
    task: str = flag("the task to optimize: any lm-eval task name, or a task YAML's name under --include_path",
                     name="--task", resume=True, commands=("optimize", "diagnose"))
    method: str = flag("optimization method (default: abo)", default="abo", resume=True, commands=("optimize", "diagnose", "compare"))
    model: str = flag(f"target: any lm-eval model backend (default: {DEFAULT_MODEL})", default=DEFAULT_MODEL,
                      name="--model", resume=True, commands=ONE_TARGET)
    model_args: str = flag(f"lm-eval model_args (default: {DEFAULT_MODEL_ARGS})", default=DEFAULT_MODEL_ARGS,
                           name="--model_args", resume=True, secret=True, commands=ONE_TARGET)
    optimizer: str = flag(f"optimizer: a litellm model string (default: {DEFAULT_OPTIMIZER})", default=DEFAULT_OPTIMIZER,
                          resume=True)
    optimizer_args: dict = flag("key=value pairs for litellm, e.g. api_base=http://...,temperature=1.0; timeout= (seconds "
                                "per call, default 120), num_retries= (default 4) and retry_backoff= (first backoff in "
                                "seconds, default 1) set the client", default_factory=dict, name="--optimizer_args",
                                parse=parse_pairs, resume=True, secret=True)
    preset: str = flag("run sizes: small (laptop) or paper (published settings)", default="small")
    rounds: int | None = flag("optimization rounds after the initial one", default=None, preset=True)
    beam: int | None = flag("prompts kept per round", default=None, preset=True, resume=True)
    minibatch: int | None = flag("train examples scored per round to find errors", default=None, preset=True, resume=True)
    train_limit: int | None = flag("train examples the run may use; for a task without a training split, the number "
                                   "carved out of its other splits (all: 50)", default=None, preset=True, resume=True)
    dev_limit: int | None = flag("dev examples candidates are scored on; for a task without a validation split, the "
                                 "number carved out (all: 50)", default=None, preset=True, resume=True)
    test_limit: int | None = flag("test examples of the final evaluation (taken from what the carving left)",
                                  default=None, preset=True)
    candidates: int | None = flag("new candidates every round asks for, round 0 included, the same for every method so "
                                  "methods compare at equal candidates (default: as each method's parameters make "
                                  "them; README: Methods and their defaults)", default=None, resume=True)
    method_args: dict = flag("method parameters as key=value pairs (see README)", default_factory=dict, parse=parse_pairs,
                             resume=True, commands=("optimize", "diagnose", "compare"))
    patience: int | None = flag("stop when the best dev score has not improved for this many rounds (0: never)",
                                default=None, commands=("optimize", "paper-table", "compare"))
    accept: str = flag("when a new prompt displaces the best: paired (only when better on a paired test over the same "
                       "dev examples, at --alpha) or score (any higher dev score)", default="score", resume=True,
                       commands=("optimize", "paper-table", "compare"))
    alpha: float = flag("level of the paired test of --accept paired, and of the report's within-noise marks "
                        "(default 0.05)", default=0.05, resume=True, commands=("optimize", "paper-table", "compare"))
    selection: str = flag("how a round's candidates are scored on dev: full (each on all of it) or racing (seeded "
                          "random growing slices; a candidate behind the leader on a paired test at --race-alpha is "
                          "dropped; the survivors get all of dev)", default="full", resume=True,
                          commands=("optimize", "paper-table", "compare"))
    race_alpha: float = flag("level of --selection racing: a round's truly best candidate is dropped with probability at "
                             "most this (a paired test per slice, Bonferroni over candidates and slices; default 0.05)",
                             default=0.05, resume=True, commands=("optimize", "paper-table", "compare"))
    no_copy: int = flag("1 (the default): reject a proposed instruction or procedure that copies training content "
                        "(phrases, the examples' own objects and numbers); 0: keep it, flagged", default=1, name="--no-copy",
                        resume=True, commands=("optimize", "paper-table", "compare"))
    sampling_temperature: float = flag("temperature of the optimizer's sampling calls: initial instructions, paraphrases, "
                                       "edits, OPRO's and PromptAgent's new prompts (default 1.0); reflections, ABO's "
                                       "calls and all scoring stay deterministic", default=1.0, resume=True,
                                       commands=("optimize", "diagnose", "paper-table", "compare"))
    metric: str | None = flag("the task metric to optimize, as `metric` or `metric,filter` (default: the task's first "
                              "metric under its first filter)", default=None, resume=True)
    error_threshold: float | None = flag(
        "what counts as an error for a graded metric: a value below this (above, where lower is better), on the "
        "metric's scale (default: the metric's own, e.g. bleu, chrf, ter 50 on 0-100, rouge 0.5 on 0-1; 0/1 metrics: "
        "any miss; README: Graded metrics)", default=None, name="--error-threshold", resume=True)
    answer_format: str | None = flag("how an answer must end so the task's filter finds it, told to the optimizer (default: "
                                     "the task's own, else found by trying phrasings on its filter and metric)",
                                     default=None, name="--answer-format", resume=True)
    export_name: str | None = flag("name of the plain lm-eval task the run writes beside best.yaml (default: <task>_abo)",
                                   default=None, name="--export-name", commands=("optimize",))
    output: str = flag("output directory (default: runs)", default="runs")
    resume: bool = flag("continue the run in the output directory from its last completed round", default=False,
                        commands=("optimize", "compare"))
    dry_run: bool = flag("print the projected calls, tokens and dollars, and the baseline's headroom on dev (the "
                                "target answers the dev examples; no optimizer call), and stop", default=False,
                                commands=("optimize",))
    max_optimizer_calls: int | None = flag("cap on optimizer calls: the search stops at its last complete round",
                                           default=None)
    max_cost: float | None = flag("cap in US dollars on the optimizer and the target together, the test evaluation "
                                  "kept aside: the search stops at its last complete round", default=None)
    max_target_tokens: int | None = flag("cap on the target's prompt and completion tokens, the test evaluation kept "
                                         "aside: the search stops at its last complete round", default=None)
    target_price: tuple[float, float] | None = flag(
        "the target's price IN,OUT in US dollars per million tokens (default: litellm's cost map where it knows the "
        "model; local backends $0)", default=None, parse=parse_price, commands=ONE_TARGET)
    objective: str | None = flag(
        "with several targets (--model once per target): what the search maximises over their dev scores, their "
        "mean (default) or the worst of them (min)", default=None, resume=True, commands=("optimize",))
    # several targets, one prompt for all (`--model` once per target): (label, model, model_args, target_price)
    # each, the first also in model, model_args and target_price; () for a run with one target
    targets: tuple = ()
    optimizer_price: tuple[float, float] | None = flag(
        "the optimizer's price IN,OUT in US dollars per million tokens, e.g. for a self-hosted one (default: litellm's "
        "cost map; embedded models $0)", default=None, parse=parse_price)
    optimizer_cache: str | None = flag("directory of the optimizer's reply cache (default: ~/.cache/lm-eval-abo/optimizer)",
                                       default="default", off="--no-optimizer-cache")
    seed: int = flag("seed of minibatches, example picks, split carving and optimizer sampling", default=1234, resume=True)
    concurrency: int = flag("optimizer calls in flight at once (default 4)", default=4)
    verbose: bool = flag("show lm-eval's own log while scoring", default=False)

    def harness(self) -> HarnessSettings:
        return HarnessSettings(**{f.name: getattr(self, f.name) for f in fields(HarnessSettings)})

    def resolved(self) -> OptimizeConfig:
        """The config with the preset's sizes filled in, checked (a method checks its own --method-args:
        `optimizers.resolve`)."""
        if not self.task:
            raise AboError("no task given (--task)")
        if any(c in self.task for c in ",*?["):
            raise AboError(f"--task {self.task}: name one task; a run optimizes one task, not a list or a pattern")
        if not str(self.output).strip():
            raise AboError("--output: name a directory")
        if self.export_name is not None and not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.\-]*", self.export_name):
            raise AboError(f"--export-name {self.export_name!r}: a task name is letters, digits and _ . - (it names a "
                           "file beside best.yaml)")
        if self.preset not in PRESETS:
            raise AboError(f"unknown preset {self.preset!r}; known: {', '.join(PRESETS)}")
        sizes = {k: getattr(self, k) if getattr(self, k) is not None else v for k, v in PRESETS[self.preset].items()}
        for name, value in [*sizes.items(), ("concurrency", self.concurrency)]:
            least = 0 if name == "rounds" else 1  # --rounds 0: the baseline and the initial candidates only
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < least):
                raise AboError(f"{name.replace('_', '-')} must be a whole number of at least {least}, got {value!r}")
        if self.candidates is not None and (not isinstance(self.candidates, int) or isinstance(self.candidates, bool)
                                            or self.candidates < 1):
            raise AboError(f"candidates must be a whole number of at least 1, got {self.candidates!r}")
        for name in ("max_optimizer_calls", "max_cost", "max_target_tokens", "patience"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0):
                raise AboError(f"{name.replace('_', '-')} must not be negative, got {value!r}")
        for name, value, known in (("accept", self.accept, ACCEPT), ("selection", self.selection, SELECTION)):
            if value not in known:
                raise AboError(f"--{name} must be one of {', '.join(known)}, got {value!r}")
        for name in ("alpha", "race_alpha"):
            if not 0 < getattr(self, name) < 1:
                raise AboError(f"--{name.replace('_', '-')} must be between 0 and 1, got {getattr(self, name)!r}")
        return replace(self, **sizes, **self._checked_targets())

    def _checked_targets(self) -> dict:
        """The targets and objective, checked: an objective needs two or more targets (default: mean)."""
        if len(self.targets) < 2:
            if self.objective is not None:
                raise AboError(f"--objective {self.objective}: it combines the dev scores of several targets; give "
                               "two or more (--model BACKEND --model_args ARGS, once per target)")
            return {"targets": ()}
        if self.objective not in (None, "mean", "min"):
            raise AboError(f"--objective must be mean or min, got {self.objective!r}")
        labels = [t[0] for t in self.targets]
        twice = sorted({x for x in labels if labels.count(x) > 1})
        if twice:
            raise AboError(f"--label {twice[0]} names two targets")
        label, model, model_args, price = self.targets[0]
        return {"targets": tuple(tuple(t) for t in self.targets), "objective": self.objective or "mean",
                "model": model, "model_args": model_args, "target_price": price}

    def fingerprint(self) -> dict:
        """The settings a resumed run must share with the run it continues, secrets masked."""
        found = {}
        for f in fields(self):
            spec = f.metadata.get("flag")
            if spec and spec.resume:
                value = getattr(self, f.name)
                if f.name == "optimizer_args":  # the client's time-out and retries may change on resume
                    value = {k: v for k, v in value.items() if k not in CLIENT_ARGS}
                found[f.name] = redacted(value) if spec.secret else value
        if self.targets:  # several targets: each of them (a run with one keeps its fingerprint of old)
            found["targets"] = [[label, model, redact_arg_string(args)] for label, model, args, _ in self.targets]
        else:
            del found["objective"]
        return found

    def redacted(self, name: str):
        """A setting as it may be written to a file or shown (secrets masked)."""
        return redacted(getattr(self, name))


def redacted(value):
    return redact_args(value) if isinstance(value, dict) else redact_arg_string(value) if isinstance(value, str) else value


def settings_fields(cls=OptimizeConfig) -> list[tuple[str, Flag, type, object]]:
    """(name, flag, type, default) of every setting with a flag: the run's own first, then lm-eval's."""
    hints = get_type_hints(cls)
    harness = {f.name for f in fields(HarnessSettings)}
    out = []
    for f in fields(cls):
        spec = f.metadata.get("flag")
        if spec is None:
            continue
        default = f.default if f.default is not MISSING else (f.default_factory() if f.default_factory is not MISSING else None)
        out.append((f.name, spec, hints[f.name], default))
    return sorted(out, key=lambda setting: setting[0] in harness and cls is not HarnessSettings)


def flag_name(name: str, spec: Flag) -> str:
    return spec.name or "--" + name.replace("_", "-")


def add_flags(parser, command: str, cls=OptimizeConfig, **overrides) -> None:
    """The flags of the settings of `cls` that `command` takes; `overrides` change a flag's argparse
    keywords (default, help, choices) for this command."""
    for name, spec, kind, default in settings_fields(cls):
        if command not in spec.commands:
            continue
        kinds = [k for k in get_args(kind) if k is not type(None)] if isinstance(kind, types.UnionType) else [kind]
        base = getattr(kinds[0], "__origin__", kinds[0])
        if base is bool:
            options = {"action": "store_true"}
        elif base is list:
            options = {"action": "append"}
        else:
            options = {"type": base if base in (int, float) else str, "default": None if spec.parse else default}
        help_text = spec.help
        if spec.preset:
            help_text += " (" + ", ".join(f"preset {p}: {values[name] or 'all'}" for p, values in PRESETS.items()) + ")"
        if name == "preset":
            options["choices"] = sorted(PRESETS)
        options.update({"help": help_text, **overrides.get(name, {})})
        parser.add_argument(flag_name(name, spec), dest=name, **options)
        if spec.off:
            parser.add_argument(spec.off, dest=name, action="store_const", const=None, help=f"turn {flag_name(name, spec)} off")


def from_flags(args, cls=OptimizeConfig, **fixed):
    """The settings (a `cls`) of a command's parsed flags; settings the command has no flag for keep their
    defaults."""
    given = {}
    for name, spec, _, default in settings_fields(cls):
        if not hasattr(args, name):
            continue
        value = getattr(args, name)
        if spec.parse:
            value = spec.parse(value, flag_name(name, spec))
        elif value is None and isinstance(default, list):
            value = []
        given[name] = value
    return cls(**{**given, **fixed})
