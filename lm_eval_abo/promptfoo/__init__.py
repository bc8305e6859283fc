"""promptfoo interop: export an optimized prompt as a promptfoo config, import a promptfoo config as an
abo task.

- `export`: an artifact -> `promptfooconfig.yaml` whose prompt, provider settings and assertions make
  promptfoo send the target the exact text lm-eval sends and grade it as lm-eval's metric does.
- `importer`: a promptfoo config -> an lm-eval task directory (YAML + data) that `optimize` and
  `lm_eval --include_path` run.
- `assertions`: promptfoo's deterministic assertion types in Python, and the lm-eval hooks of
  imported tasks.
- `syntax`: where promptfoo's Nunjucks and JavaScript regexes meet Python (escaping, translation).
"""

PROMPTFOO_VERSION = "0.120.0"  # the promptfoo release the export is verified against (DESIGN §5)


def dump_yaml(data) -> str:
    """YAML for people: long multi-line text as literal blocks, short text (stop sequences, separators)
    quoted, `FunctionRef` values as lm-eval `!function` tags."""
    import yaml

    from lm_eval_abo.files import _Dumper

    class Dumper(_Dumper):
        pass

    def text(dumper, value: str):
        if "\n" in value and (len(value) < 40 or not value.strip()):
            return dumper.represent_scalar("tag:yaml.org,2002:str", value, style='"')
        return _Dumper.yaml_representers[str](dumper, value)

    Dumper.add_representer(str, text)
    Dumper.add_representer(FunctionRef, lambda dumper, ref: dumper.represent_scalar("!function", str(ref)))
    return yaml.dump(data, Dumper=Dumper, sort_keys=False, allow_unicode=True, width=100)


class FunctionRef(str):
    """A `!function` reference in an lm-eval task YAML."""
