"""Other tools' formats and CI: `export` (a plain lm-eval task, a promptfoo config), `import promptfoo`,
`leaderboard` and the regression gate `check`."""

from __future__ import annotations


def cmd_export_promptfoo(args) -> None:
    from lm_eval_abo.config import HarnessSettings, from_flags
    from lm_eval_abo.promptfoo.export import ExportOptions, export

    options = ExportOptions(split=args.split, limit=args.limit, provider=args.provider, api_base=args.api_base,
                            api_key_env=args.api_key_env)
    config = export(args.artifact, args.output, options, from_flags(args, HarnessSettings))
    print(f"wrote {args.output}: {len(config['tests'])} tests, provider {config['providers'][0]['id']}")


def cmd_export_lm_eval(args) -> None:
    from lm_eval_abo.config import HarnessSettings, from_flags
    from lm_eval_abo.run.export import export_artifact

    path, checked = export_artifact(args.artifact, args.output, args.name, from_flags(args, HarnessSettings))
    print(f"wrote {path} ({checked} test documents, requests checked against the task with the prompt)")
    print(f"  run: lm_eval --include_path {path.parent} --tasks {path.stem} --model ...")


def cmd_import_promptfoo(args) -> None:
    from lm_eval_abo.promptfoo.importer import import_config

    path, imported = import_config(args.config, args.output, args.task_name, args.n_train, args.n_dev)
    task = path.stem
    print(f"wrote {path} ({len(imported.rows)} tests; metric: promptfoo's pass rate over the assertions)")
    for note in imported.notes:
        print(f"note: {note}")
    for warning in imported.warnings:
        print(f"warning: {warning}")
    model = imported.lm_eval if imported.lm_eval.get("model") else {"model": "<backend>", "model_args": "<args>"}
    chat = " --apply_chat_template" if imported.chat or imported.lm_eval.get("chat") else ""
    gen = imported.generation
    print(f"  optimize: lm-eval-abo optimize --include_path {args.output} --task {task} --method abo")
    print(f"  evaluate: lm_eval --include_path {args.output} --tasks {task} --model {model['model']} "
          f"--model_args {model['model_args']}{chat}")
    print(f"  generation: max_gen_toks={gen.get('max_gen_toks')}, temperature={gen.get('temperature')}, "
          f"stop={gen.get('until')}" + "".join(f", {k}={v}" for k, v in gen.items()
                                               if k not in ("max_gen_toks", "temperature", "until", "do_sample")))
    key_env = imported.lm_eval.get("key_env")
    if key_env and model["model"].startswith("local-"):
        print(f"  API key: lm-eval's {model['model']} sends OPENAI_API_KEY; set it to the value of {key_env}")


def cmd_leaderboard(args) -> None:
    from lm_eval_abo.reports.leaderboard import leaderboard

    board = leaderboard(args.paths, args.output, artifact_dirs=args.artifacts or [])
    print(board.markdown)
    print(f"\nwritten: {', '.join(str(p) for p in board.files)}")


def cmd_check(args) -> int:
    from lm_eval_abo.reports.regression import check

    outcome = check(args.results, args.baseline, max_drop=args.max_drop, stderr_aware=args.stderr_aware, paired=args.paired)
    print(outcome.markdown)
    return 1 if outcome.regressed else 0


def add(sub) -> None:
    """Exports (lm-eval, promptfoo), the promptfoo import, leaderboards and the CI regression gate."""
    from lm_eval_abo.config import HarnessSettings, add_flags

    p = sub.add_parser("export", help="export an optimized prompt (a plain lm-eval task, or a promptfoo config)")
    formats = p.add_subparsers(dest="format", metavar="FORMAT", required=True)
    p = formats.add_parser("lm-eval", help="a plain lm-eval task that the stock lm_eval runs, without this plugin",
                           description="Write the artifact's prompt as a plain lm-eval task on the run's held-out test "
                           "documents (the file an optimize run writes beside best.yaml), and check that lm-eval builds "
                           "from it the requests it builds from the task with the prompt.")
    p.add_argument("artifact", help="an artifact (e.g. runs/<task>/<method>/best.yaml)")
    p.add_argument("-o", "--output", help="directory to write into (default: the artifact's)")
    p.add_argument("--name", help="task name (default: <task>_abo)")
    add_flags(p, "export", HarnessSettings, **{k: {"help": "(default: the run's) " + h} for k, h in (
        ("metadata", "task knobs as JSON or key=value"), ("gen_kwargs", "generation settings, as lm_eval --gen_kwargs"))})
    p.set_defaults(func=cmd_export_lm_eval)

    p = formats.add_parser("promptfoo", help="a promptfoo config that reproduces lm-eval's prompt and metric",
                           description="Write a promptfoo config for an artifact: the exact prompt lm-eval sends (with "
                           "{{var}} placeholders), the target as a promptfoo provider, the task's examples as tests and "
                           "its answer extraction and metric as assertions.")
    p.add_argument("artifact", help="an artifact (e.g. runs/<task>/<method>/best.yaml)")
    p.add_argument("-o", "--output", default="promptfooconfig.yaml", help="the config to write (default: promptfooconfig.yaml)")
    p.add_argument("--split", default="test", choices=["train", "dev", "test"], help="examples to export as tests (default: test)")
    p.add_argument("--limit", type=int, help="the first N examples of the split (as lm_eval --limit)")
    p.add_argument("--provider", help="promptfoo provider id (default: mapped from the artifact's target model)")
    p.add_argument("--api-base", dest="api_base", help="OpenAI-compatible server base URL, e.g. http://127.0.0.1:8000/v1")
    p.add_argument("--api-key-env", dest="api_key_env", help="environment variable with the API key (default: OPENAI_API_KEY)")
    add_flags(p, "export", HarnessSettings, metadata={"help": "task knobs as JSON or key=value (default: those of the "
                 "optimize run)"}, gen_kwargs={"help": "generation settings over those of the optimize run, as lm_eval "
                 "--gen_kwargs"})
    p.set_defaults(func=cmd_export_promptfoo)

    p = sub.add_parser("import", help="import a task from another tool (promptfoo)")
    formats = p.add_subparsers(dest="format", metavar="FORMAT", required=True)
    p = formats.add_parser("promptfoo", help="a promptfoo config as an abo task (data, metric, initial prompt)",
                           description="Turn a promptfoo config into an lm-eval task directory: tests become the data "
                           "(seeded train/dev/test), assertions the metric, the first prompt the initial prompt.")
    p.add_argument("config", help="promptfooconfig.yaml")
    p.add_argument("-o", "--output", required=True, help="task directory to write (pass it as --include_path)")
    p.add_argument("--task-name", dest="task_name", help="task name (default: abo_pf_<config file name>)")
    p.add_argument("--n-train", dest="n_train", type=int, help="train examples (default: 40%% of the tests)")
    p.add_argument("--n-dev", dest="n_dev", type=int, help="dev examples (default: 20%% of the tests)")
    p.set_defaults(func=cmd_import_promptfoo)

    p = sub.add_parser("leaderboard", help="method x task x model tables and plots from lm-eval results",
                       description="Tables (markdown, CSV) and a self-contained HTML page with plots from lm-eval "
                       "results files, joined to the artifacts that made them.")
    p.add_argument("paths", nargs="+", help="lm-eval results_*.json files or directories holding them")
    p.add_argument("-o", "--output", default="leaderboard", help="directory for leaderboard.md/.csv/.html (default: leaderboard)")
    p.add_argument("--artifacts", action="append", help="another directory to search for artifacts (repeatable)")
    p.set_defaults(func=cmd_leaderboard)

    p = sub.add_parser("check", help="CI gate: exit 1 when new lm-eval results regress from a baseline",
                       description="Compare lm-eval results with a baseline per task and metric; print a markdown "
                       "table for a pull-request comment; exit 1 on a regression.")
    p.add_argument("--results", required=True, help="new lm-eval results (a results_*.json or a directory)")
    p.add_argument("--baseline", required=True, help="baseline lm-eval results (a results_*.json or a directory)")
    p.add_argument("--max-drop", dest="max_drop", type=float, default=0.02, help="largest allowed drop (default 0.02)")
    p.add_argument("--stderr-aware", dest="stderr_aware", action="store_true",
                   help="also require the drop to exceed 1.96 x the combined standard error")
    p.add_argument("--paired", action="store_true", help="where both sides have lm-eval's per-sample results "
                   "(--log_samples), also require the drop to be significant on a paired test over the same examples")
    p.set_defaults(func=cmd_check)


