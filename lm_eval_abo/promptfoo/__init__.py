"""promptfoo interop: export an optimized prompt as a promptfoo config, import a promptfoo config as an
abo task.

- `export`: an artifact -> `promptfooconfig.yaml` whose prompt, provider settings and assertions make
  promptfoo send the target the exact text lm-eval sends and grade it as lm-eval's metric does.
- `importer`: a promptfoo config -> an lm-eval task directory (YAML + data) that `optimize` and
  `lm_eval --include_path` run; `reading` reads the config with `prompts`, `providers`, `cases` (tests,
  expansion, filters) and `files` (file:// references, globs, $ref, CSV).
- `nunjucks`: promptfoo's template rendering reproduced in a jinja2 sandbox.
- `assertions` and `checks`: promptfoo's assertions graded in Python (`checks`: the deterministic types;
  `code`: `python` in-process and `javascript` in one Node worker per run, `node`; `graded`: the
  model-graded types, asked of the grader `grader` calls through the optimizer client into the run's
  ledger); `hooks`: the lm-eval hooks of imported tasks; `jsregex`: JavaScript regexes with JavaScript's
  semantics.
- `syntax`: where promptfoo's Nunjucks and JavaScript regexes meet Python (escaping, translation).
"""

PROMPTFOO_VERSION = "0.120.0"  # the promptfoo release the export is verified against (DESIGN §5)
