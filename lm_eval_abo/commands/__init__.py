"""The commands, one module per family, each adding its subcommands to the parser (`cli.py` parses and
dispatches): `harness` (tasks, tasks-path, serve, run), `runs` (optimize, diagnose, paper-table), `compare`
(compare, transfer) and `ecosystem` (export, import, leaderboard, check). A command imports what it runs when
it runs: lm-eval, litellm and llama.cpp take seconds to import, and `--help` or a bad flag should not wait for
them."""
