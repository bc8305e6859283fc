"""The commands that run searches: `optimize`, `diagnose` (the paper's studies) and `paper-table`."""

from __future__ import annotations

from lm_eval_abo.commands.targets import add_target_flags, run_targets

SOME_FAILED = 3  # the exit code of a grid whose other runs finished while some failed


def config_from(args, **fixed):
    """The OptimizeConfig of a command's flags."""
    from lm_eval_abo.config import from_flags

    return from_flags(args, **fixed)


def cmd_optimize(args) -> None:
    from lm_eval_abo.config import DEFAULT_MODEL, DEFAULT_MODEL_ARGS
    from lm_eval_abo.run.optimize import optimize

    optimize(config_from(args, **run_targets(args, {"model": DEFAULT_MODEL, "model_args": DEFAULT_MODEL_ARGS})))


def cmd_diagnose(args) -> None:
    from lm_eval_abo import studies

    if args.study == "reflection":
        studies.reflection_study(config_from(args), args.prompt, args.samples, args.errors, args.other_task, args.study_temperature)
    else:
        studies.refinement_study(config_from(args), args.prompt)


def cmd_paper_table(args) -> None:
    from lm_eval_abo.run.paper_table import paper_table

    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
    methods = [m.strip() for m in args.apo_methods.split(",") if m.strip()]
    result = paper_table(config_from(args, task=tasks[0] if tasks else ""), tasks, methods, seeds=args.seeds,
                         executor=args.executor, ray_address=args.ray_address)
    return SOME_FAILED if result.get("failed") else 0


def add_executor_flags(p) -> None:
    """--executor and --ray-address: how a command runs its grid of optimize runs."""
    from lm_eval_abo.run.grid import EXECUTORS

    p.add_argument("--executor", choices=EXECUTORS, default="local",
                   help="local (default): one run after another in this process; ray: each run a Ray task "
                   '(pip install "lm-eval-abo[ray]")')
    p.add_argument("--ray-address", dest="ray_address", default=None,
                   help="the Ray cluster of --executor ray, e.g. 10.0.0.1:6379 (default: start a local Ray)")


def add(sub) -> None:
    from lm_eval_abo.config import DEFAULT_MODEL, DEFAULT_MODEL_ARGS, add_flags
    from lm_eval_abo.optimizers import METHODS
    from lm_eval_abo.run.paper_table import APO_METHODS

    methods = {"choices": sorted(METHODS)}
    p = sub.add_parser(
        "optimize", help="optimize a task's prompt (APO methods or ABO), scored by lm-eval",
        description="Run a prompt-optimization method on any lm-eval task: candidates are scored by lm-eval on train/dev, "
        "the best prompt is saved as <output>/<task>/<method>/best.yaml, evaluated once on test beside the baseline, and "
        "written as a plain lm-eval task (<task>_abo.yaml) beside it. Several targets (--model BACKEND "
        "[--model_args ARGS] [--label NAME] [--target-price IN,OUT], once per target): one prompt optimized for all "
        "of them under --objective, scored per target in the artifact.",
    )
    add_flags(p, "optimize", task={"required": True}, method=methods, objective={"choices": ("mean", "min")})
    add_target_flags(p, {"model": DEFAULT_MODEL, "model_args": DEFAULT_MODEL_ARGS})
    p.set_defaults(func=cmd_optimize)

    p = sub.add_parser("diagnose", help="the paper's studies: reflection sensitivity, refinement fix/break rates")
    p.add_argument("study", choices=["reflection", "refinement"])
    p.add_argument("--prompt", help="artifact whose prompt is studied (default: the task's baseline prompt)")
    p.add_argument("--samples", type=int, default=4, help="reflection: reflections per error set (default 4, the fewest that can show p < 0.05)")
    p.add_argument("--errors", type=int, default=4, help="reflection: examples shown per reflection (default 4)")
    p.add_argument("--study-temperature", dest="study_temperature", type=float, default=1.0,
                   help="reflection: the optimizer's temperature for the reflections (default 1.0: independent samples)")
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
        "(default 0: every method runs every round)"},
        rounds={"help": "rounds of every method (default 2: ABO's rows are steps 0-2, as in the paper)"},
        max_optimizer_calls={"help": "each method row's cap on optimizer calls, the same for every row (equal budget): "
                             "the best-APO row's searches share it in equal parts (default: no cap; the rows then "
                             "compare at equal rounds, or equal --candidates, and the budget varies)"},
        max_target_tokens={"help": "each method row's cap on the target's tokens, shared as --max-optimizer-calls"},
        max_cost={"help": "each method row's cap in US dollars, optimizer and target, shared as --max-optimizer-calls"})
    add_executor_flags(p)
    p.set_defaults(func=cmd_paper_table)


