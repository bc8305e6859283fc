"""Bad input to the `lm-eval-abo` command line: each case is one line on stderr and exit code 2, with
no traceback (`--debug` adds it). The commands run in-process through `cli.main`, as the console
script does (one case also as a real process); the table in docs/reliability.md comes from here."""

import importlib.util
import json
from dataclasses import dataclass

import pytest
from conftest import bin_path, rule_lm, run_cli, write_user_task
from fakeserver import FakeServer
from reliability import Section, code, normalise

from lm_eval_abo import cli
from lm_eval_abo.artifact import store
from lm_eval_abo.artifact.prompt import Prompt
from lm_eval_abo.commands import harness, runs
from lm_eval_abo.infra.files import MAX_YAML_BYTES
from lm_eval_abo.run.session import resolve_run

TASK = "abo_object_counting_synth"
OPTIMIZE = ["optimize", "--task", TASK, "--method", "ape"]
RUN = ["run", "--model", "abo-embedded", "--tasks", TASK, "--limit", "1"]  # lm-eval's run: ~9 s to index its tasks
EXPORT = ["export", "promptfoo", "-o", "DIR/promptfoo-out.yaml"]  # a quick command that reads an artifact
NO_SERVER = ["--optimizer", "openai/fake", "--optimizer_args", "api_base=http://127.0.0.1:9/v1,api_key=x"]


def user_task(name: str, folder: str | None = None) -> list[str]:
    """`optimize` on a task of the user's, prepared under DIR/tasks/<folder>."""
    return ["optimize", "--task", name, "--method", "ape", "--include_path", f"DIR/tasks/{folder or name}"]


def prompt_arg(name: str) -> list[str]:
    return ["--metadata", json.dumps({"abo_prompt": f"DIR/{name}"})]


@dataclass
class Case:
    id: str
    argv: list[str]  # DIR stands for the folder holding the prepared files
    expect: str  # part of the error line
    tried: str = ""  # for the table, when the command line alone does not say it
    missing: str = ""  # a module the case needs to be not installed


CASES = [
    Case("unknown task", ["optimize", "--task", "abo_nope"], "unknown task 'abo_nope'"),
    Case("unknown task (run)", ["run", "--model", "abo-embedded", "--tasks", "abo_nope"], "Tasks not found: abo_nope"),
    Case("unknown method", [*OPTIMIZE[:3], "--method", "nope"], "argument --method: invalid choice: 'nope'"),
    Case("unknown model backend", [*OPTIMIZE, "--model", "nosuch", "--dry-run"],
         "unknown lm-eval model backend 'nosuch'"),
    Case("model_args not key=value", [*OPTIMIZE, "--model_args", "nonsense", "--dry-run"], "expected key=value pairs"),
    Case("unknown model_args key", [*OPTIMIZE, "--model_args", "modle=gemma-3-270m", "--output", "DIR/o1", *NO_SERVER],
         "unknown model_args modle"),
    Case("bad model_args value", [*OPTIMIZE, "--model_args", "model=gemma-3-270m,n_ctx=many", "--output", "DIR/o2",
                                  *NO_SERVER], "invalid literal for int()"),
    Case("unknown optimizer provider", [*OPTIMIZE, "--optimizer", "nosuch/model", "--output", "DIR/o3"],
         "litellm knows no provider"),
    Case("bad optimizer_args", [*OPTIMIZE, "--optimizer_args", "timeout=-1", "--output", "DIR/o4"],
         "timeout (seconds per call) must be a number of at least 0"),
    Case("optimizer_args not JSON", [*OPTIMIZE, "--optimizer_args", "{api_base:", "--dry-run"], "not valid JSON"),
    Case("negative rounds", [*OPTIMIZE, "--rounds", "-1", "--dry-run"], "rounds must be a whole number of at least 0"),
    Case("zero beam", [*OPTIMIZE, "--beam", "0", "--dry-run"], "beam must be a whole number of at least 1"),
    Case("negative cost budget", [*OPTIMIZE, "--max-cost", "-1", "--dry-run"], "max-cost must not be negative"),
    Case("negative call budget", [*OPTIMIZE, "--max-optimizer-calls", "-5", "--dry-run"],
         "max-optimizer-calls must not be negative"),
    Case("price not IN,OUT", [*OPTIMIZE, "--target-price", "2", "--dry-run"], "--target-price: expected IN,OUT"),
    Case("cost cap without a price", [*OPTIMIZE, *NO_SERVER, "--max-cost", "5", "--dry-run"],
         "--max-cost needs the optimizer's price", "`--max-cost` with an optimizer litellm has no price for"),
    Case("empty train split", [*OPTIMIZE, "--metadata", "abo_n_train=0", "--dry-run"],
         "abo_n_train must be at least 1"),
    Case("empty dataset", ["optimize", "--task", "abo_bbh_object_counting", "--metadata", "abo_data_dir=DIR/bbh_empty",
                           "--dry-run"], "the data has 0 examples", "a local BBH copy whose `examples` list is empty"),
    Case("non-UTF-8 dataset", ["optimize", "--task", "abo_bbh_object_counting", "--metadata",
                               "abo_data_dir=DIR/bbh_latin1", "--dry-run"], "not UTF-8",
         "a local BBH copy written in Latin-1"),
    Case("dataset not JSON", ["optimize", "--task", "abo_bbh_object_counting", "--metadata",
                              "abo_data_dir=DIR/bbh_broken", "--dry-run"], "not valid JSON",
         "a local BBH copy that is not JSON"),
    Case("missing artifact", [*RUN, *prompt_arg("missing.yaml")], "no such file"),
    Case("wrong-task artifact", [*RUN, *prompt_arg("navigate.yaml")], "is for task 'abo_navigate_synth'",
         "an artifact made for abo_navigate_synth"),
    Case("non-UTF-8 artifact", [*EXPORT, "DIR/latin1.yaml"], "not UTF-8 text", "an artifact written in Latin-1"),
    Case("unsafe YAML tag", [*EXPORT, "DIR/python-tag.yaml"], "could not determine a constructor",
         "an artifact holding `!!python/object/apply:os.system`"),
    Case("YAML alias bomb", [*EXPORT, "DIR/alias-bomb.yaml"], "YAML aliases are not accepted",
         "an artifact that is a billion-laughs alias bomb"),
    Case("oversized YAML", [*EXPORT, "DIR/huge.yaml"], "file is larger than 20 MiB", "a 21 MiB artifact"),
    Case("earlier run without --resume", [*OPTIMIZE, "--output", "DIR/earlier"], "pass --resume to continue it",
         "an output folder that holds a run"),
    Case("--resume with other settings", [*OPTIMIZE, "--output", "DIR/earlier", "--resume", "--seed", "7"],
         "was made with other settings (seed)"),
    Case("output is a file", [*OPTIMIZE, "--output", "DIR/a-file", *NO_SERVER, "--rounds", "0"], "Not a directory",
         "`--output` naming an existing file"),
    Case("task without a test or validation split", [*user_task("only_train"), "--dry-run"],
         "has neither a test_split nor a validation_split", "a task YAML of the user's with only a training split"),
    Case("task too small for the limits", [*user_task("only_test"), "--dry-run"], "too few to carve 16 train documents",
         "a task whose only split (test) has 10 documents, with the default `--train-limit 16`"),
    Case("empty split in the data", [*user_task("empty_validation"), "--dry-run"],
         'Instruction "validation" corresponds to no data', "a task whose validation data file has no rows"),
    Case("unknown metric", [*user_task("two_metrics"), "--metric", "acc", "--dry-run"],
         "has no such metric; choose one of exact_match,get-answer, bleu,get-answer",
         "a task whose metric_list is exact_match, then bleu"),
    Case("metric under an unknown filter", [*user_task("two_metrics"), "--metric", "bleu,strict", "--dry-run"],
         "has no such metric; choose one of", "the same task, whose one filter is get-answer"),
    Case("empty metric", [*user_task("two_metrics"), "--metric", "", "--dry-run"], "--metric '': task 'two_metrics'"),
    Case("gen_kwargs token count not a number", [*OPTIMIZE, "--gen_kwargs", "max_gen_toks=abc", "--dry-run"],
         "lm-eval cannot use it (invalid literal for int()"),
    Case("gen_kwargs stop sequence not text", [*OPTIMIZE, "--gen_kwargs", "until=5", "--dry-run"],
         "Expected `kwargs['until']` to be of type Union[str,list]"),
    Case("gen_kwargs temperature not a number", [*OPTIMIZE, "--gen_kwargs", "temperature=hot", "--dry-run"],
         "could not convert string to float: 'hot'"),
    Case("missing include_path", [*OPTIMIZE, "--include_path", "DIR/nowhere", "--dry-run"], "no such directory"),
    Case("missing include_path (run)", ["run", "--model", "abo-embedded", "--tasks", TASK, "--include_path", "DIR/nowhere"],
         "no such directory"),
    Case("backend without its extra (hf)", [*OPTIMIZE, "--model", "hf", "--dry-run"],
         "--model hf needs the Python package torch, which is not installed: pip install 'lm_eval[hf]'",
         "`--model hf` where torch and transformers are not installed", missing="torch"),
    Case("backend without its extra (vllm)", [*OPTIMIZE, "--model", "vllm", "--dry-run"],
         "pip install 'lm_eval[vllm]'", "`--model vllm` where vllm is not installed", missing="vllm"),
    Case("backend without its extra (run)", ["run", "--model", "vllm", "--tasks", TASK, "--limit", "1"],
         "pip install 'lm_eval[vllm]'", "`--model vllm` where vllm is not installed", missing="vllm"),
    Case("tokenizer package missing", [*OPTIMIZE, "--model", "local-completions", "--model_args",
                                       "model=my-model,base_url=http://127.0.0.1:9/v1/completions", "--output", "DIR/o5",
                                       *NO_SERVER], "needs the Python package transformers",
         "an API backend whose default tokenizer needs transformers, which is not installed", missing="transformers"),
    Case("chat backend without a chat template", [*OPTIMIZE, "--model", "local-chat-completions", "--dry-run"],
         "sends chat messages: add --apply_chat_template"),
    Case("API key not set", [*OPTIMIZE, "--model", "openai-completions", "--model_args", "model=gpt-3.5-turbo-instruct",
                             "--output", "DIR/o6", *NO_SERVER], "Please set the `OPENAI_API_KEY` environment variable",
         "`OPENAI_API_KEY` not set"),
    Case("backend arguments lm-eval refuses", [*OPTIMIZE, "--model", "gguf", "--model_args", "", "--output", "DIR/o7",
                                               *NO_SERVER], "must pass `base_url` to use GGUF LM"),
    Case("!function that does not import", [*user_task("bad_function"), "--dry-run"],
         "Cannot import module 'nosuchmodule' for function 'parse'", "a task YAML with `doc_to_target: !function "
         "nosuchmodule.parse`"),
    Case("task YAML that does not parse", [*user_task("broken_yaml"), "--dry-run"], "lm-eval cannot read",
         "a task YAML with a stray indentation"),
    Case("group name", [*user_task("my_group", "groups"), "--dry-run"], "'my_group' is a group of 2 tasks",
         "a group of two tasks under --include_path"),
    Case("tag name", [*user_task("my_tag", "groups"), "--dry-run"], "'my_tag' is a tag of 1 tasks"),
    Case("misspelt lm-eval task", ["optimize", "--task", "hellaswg", "--method", "ape", "--dry-run"],
         "or under --include_path; did you mean hellaswag"),
    Case("a list or a pattern as the task", ["optimize", "--task", "abo_*", "--method", "ape", "--dry-run"],
         "name one task; a run optimizes one task"),
    Case("export name with a slash", [*OPTIMIZE, "--export-name", "my/task", "--dry-run"],
         "a task name is letters, digits and _ . -"),
    Case("optimizer cache is a file", [*OPTIMIZE, "--optimizer-cache", "DIR/a-file", "--output", "DIR/o8",
                                       "--model", "local-completions", "--model_args", "model=x,tokenizer_backend=None",
                                       *NO_SERVER], "not a folder a cache can be kept in (File exists)"),
    Case("paper-table without tasks", ["paper-table", "--tasks", ",", "--output", "DIR/pt"], "--tasks: name at least one"),
    Case("paper-table with an unknown method", ["paper-table", "--apo-methods", "ape,nope", "--output", "DIR/pt"],
         "--apo-methods: unknown nope; known: ape, apo, apo-sum, promptagent, opro"),
    Case("non-UTF-8 promptfoo config", ["import", "promptfoo", "DIR/latin1-promptfoo.yaml", "-o", "DIR/pf"],
         "not UTF-8 text", "a promptfoo config written in Latin-1"),
    Case("promptfoo file with unsupported parts", ["import", "promptfoo", "DIR/promptfooconfig.yaml", "-o", "DIR/pf"],
         "cannot import: top-level keys scenarios; assert type 'moderation'",
         "a promptfoo config with a `moderation` assertion and a `scenarios` key"),
]
SECTION = Section("bad-input", "Bad input (tests/test_bad_input.py)", [c.id for c in CASES] + [
    "unexpected internal error", "--rounds 0", "splits smaller than a batch"])


table = SECTION.fixture()


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """The bad files the cases read."""
    d = tmp_path_factory.mktemp("bad")
    store.save(store.Artifact(task="abo_navigate_synth", method="apo", prompt=Prompt()), d / "navigate.yaml")
    latin1 = "schema_version: 1\ntask: abo_object_counting_synth\nmethod: caf\xe9\n"
    (d / "latin1.yaml").write_bytes(latin1.encode("latin-1"))
    (d / "python-tag.yaml").write_text("!!python/object/apply:os.system ['echo pwned']\n")
    laughs = ["a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    laughs += [f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 9)}]" for i in range(8)]
    (d / "alias-bomb.yaml").write_text("\n".join(laughs) + "\n")
    (d / "huge.yaml").write_text("task: " + "x" * (MAX_YAML_BYTES + (1 << 20)) + "\n")
    for name, content in [("bbh_empty", b'{"examples": []}'), ("bbh_latin1", '{"examples": [{"input": "caf\xe9", '
                          '"target": "1"}]}'.encode("latin-1")), ("bbh_broken", b'{"examples": [')]:
        (d / name).mkdir()
        (d / name / "object_counting.json").write_bytes(content)
    earlier = runs.config_from(cli.build_parser().parse_args([*OPTIMIZE, "--output", str(d / "earlier")]))
    (d / "earlier" / TASK / "ape").mkdir(parents=True)
    (d / "earlier" / TASK / "ape" / "state.json").write_text(json.dumps({"config": resolve_run(earlier)[0].fingerprint()}))
    (d / "a-file").write_text("not a folder\n")
    rubric = [{"type": "moderation", "value": "is polite"}]
    tests = [{"vars": {"q": f"question {i}"}, "assert": rubric} for i in range(4)]
    config = {"prompts": ["Answer: {{q}}"], "providers": ["openai:gpt-4o-mini"], "tests": tests, "scenarios": []}
    (d / "promptfooconfig.yaml").write_text(json.dumps(config))
    (d / "latin1-promptfoo.yaml").write_bytes("prompts: ['R\xe9ponds: {{q}}']\n".encode("latin-1"))
    user_tasks(d / "tasks")
    return d


def user_tasks(d):
    """Task YAMLs of a user's that lm-eval-abo cannot optimize as they are, each in its own folder."""
    write_user_task(d / "only_train", "only_train", splits=("train",), sizes=(10,))
    write_user_task(d / "only_test", "only_test", splits=("test",), sizes=(10,))
    write_user_task(d / "empty_validation", "empty_validation", sizes=(10, 0, 10))
    write_user_task(d / "two_metrics", "two_metrics", metric_list=[
        {"metric": "exact_match", "aggregation": "mean", "higher_is_better": True}, {"metric": "bleu"}])
    folder = write_user_task(d / "bad_function", "bad_function")
    text = (folder / "bad_function.yaml").read_text()
    (folder / "bad_function.yaml").write_text(text.replace("doc_to_target: '{{answer}}'",
                                                           "doc_to_target: !function nosuchmodule.parse"))
    (d / "broken_yaml").mkdir()
    (d / "broken_yaml" / "broken_yaml.yaml").write_text("task: broken_yaml\n  dataset_path: json\n")
    folder = write_user_task(d / "groups", "my_arith", tag="my_tag")
    (folder / "my_group.yaml").write_text(json.dumps({"group": "my_group", "task": ["my_arith", "other"]}))


def run_main(argv, capsys) -> tuple[int, str]:
    exit_code = cli.main(argv)
    return exit_code, capsys.readouterr().err


def last_line(err: str) -> str:
    lines = [line for line in err.strip().splitlines() if line.strip()]
    return lines[-1] if lines else ""


@pytest.mark.parametrize("case", [
    pytest.param(c, id=c.id, marks=[pytest.mark.slow] if c.argv[0] == "run" else []) for c in CASES])
def test_bad_input_is_one_line_and_exit_code_2(case, files, capsys, monkeypatch):
    monkeypatch.chdir(files)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    if case.missing and importlib.util.find_spec(case.missing):
        pytest.skip(f"{case.missing} is installed here")
    argv = [a.replace("DIR", str(files)) for a in case.argv]
    if argv[0] == "run":  # lm-eval's run sets up its logging once per process: give it its own
        proc = run_cli(bin_path("lm-eval-abo"), *argv, cwd=files, check=False)
        exit_code, err = proc.returncode, proc.stderr
    else:
        exit_code, err = run_main(argv, capsys)
    line = last_line(err)
    assert exit_code == 2, err[-2000:]
    assert case.expect in line and line.startswith("lm-eval-abo"), err[-2000:]
    assert "Traceback" not in err
    command = "lm-eval-abo " + " ".join(a if a and " " not in a and "{" not in a else f"'{a}'" for a in case.argv)
    SECTION.record(case.id, f"{case.tried}: {code(command)}" if case.tried else code(command),
                   f"exit 2: {code(normalise(line, files))}")


def test_debug_adds_the_traceback(capsys):
    exit_code, err = run_main(["--debug", "optimize", "--task", "abo_nope"], capsys)
    assert exit_code == 2 and "Traceback" in err
    assert last_line(err) == "lm-eval-abo: error: unknown task 'abo_nope': not among lm-eval's tasks (`lm-eval ls tasks`), this plugin's (`lm-eval-abo tasks`) or under --include_path"


def test_an_unexpected_error_is_one_line_with_exit_code_1(capsys, monkeypatch):
    def broken(args):
        raise RuntimeError("simulated bug\nsecond line")

    monkeypatch.setattr(harness, "cmd_tasks", broken)
    exit_code, err = run_main(["tasks"], capsys)
    assert exit_code == 1 and err.strip() == (
        "lm-eval-abo: error: unexpected RuntimeError: simulated bug (rerun with --debug for the traceback)")
    SECTION.record("unexpected internal error", "a command raising an unforeseen exception (simulated: `RuntimeError`)",
                   f"exit 1: {code(err.strip())}; with `--debug` the traceback too")


def test_the_console_script_exits_2_with_one_line(tmp_path):
    proc = run_cli(bin_path("lm-eval-abo"), "optimize", "--task", "abo_nope", cwd=tmp_path, check=False)
    assert proc.returncode == 2 and proc.stderr.strip().splitlines() == [
        "lm-eval-abo: error: unknown task 'abo_nope': not among lm-eval's tasks (`lm-eval ls tasks`), this plugin's (`lm-eval-abo tasks`) or under --include_path"]


def small_run(tmp_path, server, **overrides):
    from lm_eval_abo.run.optimize import OptimizeConfig, optimize

    settings = dict(
        task=TASK, method="ape", optimizer="openai/fake", optimizer_args={"api_base": server.base_url, "api_key": "x"},
        beam=1, train_limit=4, dev_limit=3, test_limit=3, minibatch=2, method_args={"paraphrases": 1},
        optimizer_cache=None, output=str(tmp_path),
    )
    config = OptimizeConfig(**{**settings, **overrides})
    lines = []
    outcome = optimize(config, out=lines.append, lm=rule_lm())
    return outcome, "\n".join(lines)


def test_rounds_0_scores_the_baseline_and_initial_candidates_then_evaluates_on_test(tmp_path):
    with FakeServer() as server:
        outcome, _ = small_run(tmp_path, server, rounds=0, metadata={"abo_n_test": 5})
    artifact = outcome.artifact_data
    assert [r["round"] for r in artifact.trace] == [0]
    assert [c["origin"] for c in artifact.trace[0]["candidates"]] == ["baseline", "initial"]
    assert artifact.scores["test"]["n"] == 3 and outcome.results.exists()
    rounds, origins = [r["round"] for r in artifact.trace], [c["origin"] for c in artifact.trace[0]["candidates"]]
    SECTION.record("--rounds 0", "`optimize` with `--rounds 0` (rule-based target, fake optimizer server)",
                   f"valid: rounds in the trace {rounds}, the candidates scored on dev {origins}; the best is saved "
                   f"and evaluated on {artifact.scores['test']['n']} test examples")


def test_splits_smaller_than_a_batch_use_the_whole_split(tmp_path):
    with FakeServer() as server:
        outcome, _ = small_run(tmp_path, server, rounds=1, minibatch=64, train_limit=100, dev_limit=50,
                               metadata={"abo_n_train": 3, "abo_n_dev": 2, "abo_n_test": 2})
    artifact = outcome.artifact_data
    assert len(artifact.splits["train"]) == 3 and len(artifact.splits["dev"]) == 2 and artifact.scores["test"]["n"] == 2
    assert [r["round"] for r in artifact.trace] == [0, 1]
    SECTION.record("splits smaller than a batch", "`optimize` with `--minibatch 64 --train-limit 100 --dev-limit 50 "
                   "--test-limit 3` on splits of 3 train, 2 dev, 2 test examples "
                   "(`--metadata abo_n_train=3,abo_n_dev=2,abo_n_test=2`; rule-based target, fake optimizer server)",
                   f"valid: each split is used whole (train {len(artifact.splits['train'])}, dev "
                   f"{len(artifact.splits['dev'])}, test {artifact.scores['test']['n']}), rounds in the trace "
                   f"{[r['round'] for r in artifact.trace]}")
