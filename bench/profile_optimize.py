"""Profile the optimize loop with pyinstrument: where does the time go besides the models?

Default: instant stand-ins for both models (bench/fakes.py), so everything the profile shows is harness
work: building tasks, lm-eval's request building, filters and metrics, meta-prompt rendering, the litellm
client, checkpoints and reports. `--real` profiles the embedded models at a tiny size instead (the models
then dominate). Also times the bridge's cost per candidate scored, with the instant target.

    python bench/profile_optimize.py                 # instant models, method abo, small preset
    python bench/profile_optimize.py --method apo
    python bench/profile_optimize.py --real          # embedded models, tiny budget
"""

from __future__ import annotations

import argparse
import tempfile
from dataclasses import replace

import record

# (category, test on a frame): the innermost matching frame on a sample's stack decides its category
CATEGORIES = [
    ("target model", lambda f: f.function == "generate_until" and f.class_name in ("InstantTarget", "EmbeddedLM")),
    ("optimizer calls (client, litellm, model)", lambda f: f.function == "complete_many" and f.class_name == "OptimizerLLM"),
    ("lm-eval task build (TaskManager.load)", lambda f: f.function == "load" and f.class_name == "TaskManager"),
    ("synthetic data generation", lambda f: f.function == "synthetic" and "lm_eval_abo" in f.file_path),
    ("prompt columns (AboTask.download)", lambda f: f.function == "download" and "lm_eval_abo" in f.file_path),
    ("lm-eval evaluate (requests, filters, metrics)", lambda f: f.function == "evaluate" and f.file_path.endswith("evaluator.py")),
    ("test evaluation (simple_evaluate, results files)", lambda f: f.function == "evaluate_on_test"),
    ("demonstration checks (task filter + metric)", lambda f: f.function == "check" and f.class_name == "Bridge"),
    ("meta-prompt rendering", lambda f: f.function == "render" and f.file_path.endswith("metaprompts.py")),
    ("checkpoints and reports", lambda f: f.function in ("checkpoint", "run_report", "save") and "lm_eval_abo" in f.file_path),
    ("session: task index, target load, bridge", lambda f: f.function in ("open_session", "plan_session")),
]


def categorise(root) -> dict[str, float]:
    """Seconds per category (self time attributed to the innermost matching frame)."""
    totals: dict[str, float] = {}

    def walk(frame, category: str) -> None:
        for name, test in CATEGORIES:
            if test(frame):
                category = name
                break
        own = frame.time - sum(child.time for child in frame.children)
        totals[category] = totals.get(category, 0.0) + max(own, 0.0)
        for child in frame.children:
            walk(child, category)

    walk(root, "other (search loop, methods, imports)")
    return dict(sorted(totals.items(), key=lambda kv: -kv[1]))


def hottest(root, limit: int = 15) -> list[dict]:
    """Functions by self time, summed over the whole tree."""
    own: dict[str, float] = {}

    def walk(frame, parent_key: str) -> None:
        # pyinstrument's "[self]" frames stand for time spent in their parent's own code
        key = parent_key if frame.is_synthetic else f"{frame.function} ({frame.file_path_short}:{frame.line_no})"
        own[key] = own.get(key, 0.0) + max(frame.time - sum(c.time for c in frame.children), 0.0)
        for child in frame.children:
            walk(child, key)

    walk(root, "root")
    return [{"function": k, "self s": v} for k, v in sorted(own.items(), key=lambda kv: -kv[1])[:limit]]


def scoring_overhead(candidates: int, n_dev: int, repeats: int = 3) -> dict:
    """Seconds the bridge spends per candidate when the target answers instantly: task build, request
    building, filters, metrics, sample parsing (what every scoring pass pays besides the model)."""
    from fakes import InstantTarget
    from lm_eval.tasks import TaskManager

    from lm_eval_abo.scoring import Bridge
    from lm_eval_abo.tasks import tasks_dir

    manager = TaskManager(include_path=str(tasks_dir()), include_defaults=False, metadata={"abo_n_dev": n_dev})
    times = []
    for r in range(repeats):
        bridge = Bridge(InstantTarget(), record.TASK, manager)
        base = bridge.default_prompt
        prompts = [replace(base, instruction=f"{base.instruction} (variant {r}.{i})") for i in range(candidates)]
        with record.stopwatch() as elapsed:
            bridge.score(prompts, "dev", list(range(n_dev)))
        times.append(elapsed())
    per_pass = record.median(times)
    return {"candidates": candidates, "dev_examples": n_dev, "pass_s": per_pass, "per_candidate_s": per_pass / candidates}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--method", default="abo")
    parser.add_argument("--real", action="store_true", help="the embedded models at a tiny size instead of instant ones")
    args = parser.parse_args()
    load_at_start = record.header(f"Profile of the optimize loop ({'embedded' if args.real else 'instant'} models, {args.method})")

    from fakes import INSTANT_OPTIMIZER, InstantTarget, register_instant_optimizer
    from pyinstrument import Profiler

    from lm_eval_abo.run.optimize import OptimizeConfig, optimize

    with tempfile.TemporaryDirectory() as tmp:
        if args.real:
            config = OptimizeConfig(task=record.TASK, method=args.method, rounds=1, beam=1, train_limit=4, dev_limit=3,
                                    test_limit=3, minibatch=2, gen_kwargs={"max_gen_toks": 48}, output=tmp,
                                    optimizer_cache=None, patience=0)
            lm = None
        else:
            register_instant_optimizer()
            config = OptimizeConfig(task=record.TASK, method=args.method, optimizer=INSTANT_OPTIMIZER, output=tmp,
                                    optimizer_cache=None, patience=0)
            lm = InstantTarget()
        profiler = Profiler(interval=0.001)
        with record.stopwatch() as elapsed:
            profiler.start()
            outcome = optimize(config, out=lambda line: None, lm=lm)
            profiler.stop()
        wall = elapsed()
    root = profiler.last_session.root_frame()
    categories = categorise(root)
    usage = outcome.artifact_data.usage
    print(f"optimize wall time: {wall:.2f} s; optimizer calls {usage['optimizer']['calls']}, "
          f"target requests {usage['target']['calls']}\n")
    print(record.table([{"where": k, "seconds": v, "share": f"{100 * v / wall:.1f}%"} for k, v in categories.items()]))
    print("\nhottest functions (self time):\n")
    hot = hottest(root)
    print(record.table(hot))
    overhead = scoring_overhead(candidates=8, n_dev=10)
    print(f"\nbridge cost per candidate scored (instant target, {overhead['candidates']} candidates x "
          f"{overhead['dev_examples']} dev examples in one pass): {1000 * overhead['per_candidate_s']:.0f} ms "
          f"(pass: {overhead['pass_s']:.2f} s)")

    record.RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    name = f"profile_optimize_{'real' if args.real else 'instant'}_{args.method}"
    (record.RESULTS_DIR / f"{name}.txt").write_text(profiler.output_text(unicode=True, color=False))
    (record.RESULTS_DIR / f"{name}.html").write_text(profiler.output_html())
    record.save(name, {"load_average_1min_at_start": load_at_start, "wall_s": wall, "categories_s": categories,
                       "hottest": hot, "scoring_overhead": overhead, "usage": usage})


if __name__ == "__main__":
    main()
