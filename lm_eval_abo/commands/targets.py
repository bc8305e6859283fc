"""The target flags of the commands that take one or more targets (`optimize`, `compare`, `transfer`), as lm-eval
names a model: `--model` then its `--model_args`, once per target. `--model` starts a target, and `--model_args`,
`--label` and `--target-price` after it belong to it. For `optimize` a flag before any `--model` belongs to the
first target, whose model is then the default one, so `--model_args ARGS --model BACKEND` names one target as
before."""

from __future__ import annotations

import argparse

from lm_eval_abo.infra.flags import parse_price

TARGET_FLAGS = {
    "--model": ("model", "BACKEND", "a target: any lm-eval model backend (repeatable: once per target)"),
    "--model_args": ("model_args", "ARGS", "lm-eval model_args of the --model before it"),
    "--label": ("label", "NAME", "the name of the --model before it in the tables and folders (default: its "
                "model= or pretrained= name, else its backend)"),
    "--target-price": ("target_price", "IN,OUT", "the price of the --model before it in US dollars per million "
                       "tokens (default: litellm's cost map where it knows the model; local backends $0)"),
}


class TargetFlag(argparse.Action):
    """`--model` starts a target; the other target flags complete the last one, each at most once."""

    implied_first = False  # whether a flag before any --model starts the first target (its model to come)

    def __call__(self, parser, namespace, value, option=None):
        targets = [dict(t) for t in getattr(namespace, self.dest) or []]
        key = TARGET_FLAGS[option][0]
        if key == "model" and len(targets) == 1 and "model" not in targets[0]:
            targets[0]["model"] = value  # the first target's flags came before its --model
        elif key == "model":
            targets.append({"model": value})
        elif not targets and self.implied_first:
            targets.append({key: value})
        elif not targets:
            parser.error(f"{option} {value}: put it after the --model it belongs to")
        elif key in targets[-1]:
            parser.error(f"{option} is given twice for --model {targets[-1].get('model', '(default)')}")
        else:
            targets[-1][key] = value
        setattr(namespace, self.dest, targets)


class FirstImplied(TargetFlag):
    implied_first = True


def add_target_flags(p, defaults: dict | None = None) -> None:
    """The target flags; with `defaults` (the model and model_args of a target given without them: optimize's),
    a flag before any --model belongs to the first target."""
    action = FirstImplied if defaults else TargetFlag
    for option, (key, metavar, help_text) in TARGET_FLAGS.items():
        if defaults and key in defaults:
            help_text += f" (default: {defaults[key]})"
        p.add_argument(option, dest="targets", action=action, default=None, metavar=metavar, help=help_text)


def targets_of(args, least: int):
    """The checked targets of the command's target flags."""
    from lm_eval_abo.run.transfer import entrants

    given = [{**t, "target_price": parse_price(t.get("target_price"), "--target-price")} for t in args.targets or []]
    return entrants(given, least)


def run_targets(args, defaults: dict) -> dict:
    """The settings of optimize's targets: one (or none: `defaults`) as the model, model_args and target_price
    of old; several as `targets`, each (label, model, model_args, target_price), the first also as the one."""
    given = [dict(t) for t in args.targets or []]
    if len(given) < 2:
        one = {**defaults, **(given[0] if given else {})}
        one.pop("label", None)
        return {**one, "target_price": parse_price(one.get("target_price"), "--target-price")}
    found = targets_of(argparse.Namespace(targets=given), 2)
    first = found[0]
    return {"model": first.model, "model_args": first.model_args, "target_price": first.target_price,
            "targets": tuple((e.label, e.model, e.model_args, e.target_price) for e in found)}
