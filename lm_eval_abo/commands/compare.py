"""The commands that compare targets: `compare` (models at their own prompts: one optimize run per target, every
prompt on every target) and `transfer` (a finished prompt on other targets). Both take their targets as lm-eval
does, `--model` then its `--model_args`, once per target: `--model` starts a target, and `--model_args`, `--label`
and `--target-price` after it belong to it."""

from __future__ import annotations

from lm_eval_abo.commands.runs import SOME_FAILED, add_executor_flags, config_from
from lm_eval_abo.commands.targets import add_target_flags, targets_of


def cmd_compare(args) -> int:
    from lm_eval_abo.run.compare import compare

    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
    result = compare(config_from(args, task=tasks[0] if tasks else ""), tasks, targets_of(args, 2), args.executor,
                     args.ray_address, objective=None if args.objective == "none" else args.objective)
    return SOME_FAILED if result["failed"] else 0


def cmd_transfer(args) -> int:
    from lm_eval_abo.config import HarnessSettings, from_flags
    from lm_eval_abo.run.transfer import transfer

    result = transfer(args.artifact, targets_of(args, 1), from_flags(args, HarnessSettings), args.output)
    return SOME_FAILED if result["failed"] else 0


def add(sub) -> None:
    from lm_eval_abo.config import HarnessSettings, add_flags
    from lm_eval_abo.optimizers import METHODS

    p = sub.add_parser(
        "compare", help="models compared at their own prompts: a transfer matrix, rankings, the rank changes that "
        "hold",
        description="For each task and target, one optimize run with the same method, budget, splits, seed and "
        "optimizer, and one more run for all the targets at once, whose one prompt is the shared prompt (--objective) "
        "(the cells of one grid); then the baseline, every target's own best prompt and the shared prompt evaluated on "
        "every target by lm-eval on the same held-out test documents. Writes compare.md, .csv, _rankings.csv, .html and .json in --output: the transfer matrix "
        "(each score with its paired difference from the model's baseline and a 95% CI), the rankings at the "
        "baseline, at each model's own best and at the shared prompt with Kendall's tau, and the rank changes that "
        "hold. Targets: --model BACKEND [--model_args ARGS] [--label NAME] [--target-price IN,OUT], once "
        "per target.",
    )
    p.add_argument("--tasks", required=True, help="comma-separated tasks")
    p.add_argument("--objective", choices=("mean", "min", "none"), default="mean",
                   help="the shared prompt's run optimizes one prompt for all the targets at once, maximising their "
                   "mean dev score (default) or the worst of them (min); none: no shared prompt")
    add_target_flags(p)
    add_flags(p, "compare", method={"choices": sorted(METHODS), "help": "the method of every run (default: abo)"},
              output={"default": "compare", "help": "output directory (default: compare)"},
              resume={"help": "reuse the finished runs in --output and continue the others from their last round"},
              max_cost={"help": "cap in US dollars over the whole comparison, optimizer and target: the evaluations "
                        "after the runs are projected and kept aside, the rest shared among the runs in proportion "
                        "to their projections"},
              max_target_tokens={"help": "cap on the target's tokens over the whole comparison, shared as --max-cost"},
              max_optimizer_calls={"help": "cap on optimizer calls over all the runs, shared as --max-cost"})
    add_executor_flags(p)
    p.set_defaults(func=cmd_compare)

    p = sub.add_parser(
        "transfer", help="a finished prompt scored on other targets against their baselines",
        description="Evaluate an artifact's prompt and the task's baseline on each target by lm-eval, on the "
        "held-out test documents of the run that made it: the transfer matrix of compare with one prompt row (each "
        "score with its paired difference from the target's baseline and a 95% CI) and the rankings. Writes "
        "transfer.md, .csv, _rankings.csv, .html and .json in --output.",
    )
    p.add_argument("artifact", help="an artifact (e.g. runs/<task>/<method>/best.yaml)")
    add_target_flags(p)
    p.add_argument("-o", "--output", default="transfer", help="output directory (default: transfer)")
    add_flags(p, "transfer", HarnessSettings, **{k: {"help": "(default: the run's) " + h} for k, h in (
        ("metadata", "task knobs as JSON or key=value"),
        ("gen_kwargs", "generation settings, as lm_eval --gen_kwargs"))})
    p.set_defaults(func=cmd_transfer)
