import pytest
import yaml

from lm_eval_abo.artifact import store
from lm_eval_abo.artifact.prompt import Demonstration, Prompt
from lm_eval_abo.infra.errors import AboError
from lm_eval_abo.infra.files import read_yaml, write_yaml

PROMPT = Prompt(
    instruction="Count carefully.\nThen answer.",
    procedure=("List every item.", "Add the counts."),
    demonstrations=(Demonstration(doc={"id": "a1", "input": "I have a cat.", "target": "1"}, output="Step 1: cat. So the answer is 1."),),
    answer_prefix="Let's think step by step.",
)


def artifact(**overrides) -> store.Artifact:
    return store.Artifact(task="abo_object_counting_synth", method="abo", prompt=PROMPT, **overrides)


def test_artifact_round_trip(tmp_path):
    path = store.save(artifact(scores={"dev": {"metric": "exact_match,answer", "value": 0.5, "n": 4}}), tmp_path / "a.yaml")
    loaded = store.load(path, task="abo_object_counting_synth")
    assert loaded.prompt == PROMPT and loaded.scores["dev"]["value"] == 0.5
    text = path.read_text()
    assert "instruction: |-\n    Count carefully.\n    Then answer." in text, "multi-line text is written as a readable block"
    assert f"prompt_sha256: {PROMPT.sha256()}" in text
    assert {"python", "lm-eval", "lm-eval-abo"} <= set(loaded.versions) and loaded.created


@pytest.mark.parametrize(
    "edit, problem",
    [
        (lambda d: d.pop("lm_eval_task"), "missing or empty field 'lm_eval_task'"),
        (lambda d: d.pop("prompt"), "missing field 'prompt'"),
        (lambda d: d.update(schema_version=9), "schema_version must be one of 1, 2"),
        (lambda d: d.update(colour="red"), "unknown field 'colour'"),
        (lambda d: d.update(scores=[1, 2]), "field 'scores' must be a dict"),
        (lambda d: d["prompt"].update(procedure="one step"), "procedure must be a list"),
        (lambda d: d["prompt"].update(placement="footer"), "placement must be one of"),
        (lambda d: d["prompt"].update(instruction="edited"), "prompt_sha256 does not match"),
        (lambda d: d["prompt"]["demonstrations"][0].pop("output"), "demonstrations[0]"),
    ],
)
def test_malformed_artifacts_give_one_line_naming_file_and_problem(tmp_path, edit, problem):
    data = artifact().to_dict()
    edit(data)
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(AboError) as err:
        store.load(path)
    assert str(path) in str(err.value) and problem in str(err.value) and "\n" not in str(err.value)


def test_an_object_met_twice_is_written_twice_and_reads_back(tmp_path):
    shared = {"step_failures": [{"step": 1, "wrong": 2}]}
    trace = [{"candidates": [{"notes": {"diagnosis": shared}}, {"notes": {"diagnosis": shared}}]}]
    path = store.save(artifact(trace=trace), tmp_path / "a.yaml")
    assert "&id" not in path.read_text() and store.load(path).trace == trace


def test_wrong_task_and_missing_file(tmp_path):
    path = store.save(artifact(), tmp_path / "a.yaml")
    with pytest.raises(AboError, match="is for task 'abo_object_counting_synth', not 'abo_navigate_synth'"):
        store.load(path, task="abo_navigate_synth")
    with pytest.raises(AboError, match="no such file"):
        store.load(tmp_path / "missing.yaml")


@pytest.mark.parametrize(
    "text, problem",
    [
        ("!!python/object/apply:os.system ['echo hi']", "not valid YAML"),
        ("a: &x [1, 2]\nb: *x\n", "aliases are not accepted"),
        ("task: [unclosed", "not valid YAML"),
    ],
)
def test_yaml_reader_refuses_unsafe_or_broken_input(tmp_path, text, problem):
    path = tmp_path / "x.yaml"
    path.write_text(text)
    with pytest.raises(AboError, match=problem):
        read_yaml(path)


def test_yaml_reader_refuses_huge_and_non_utf8_files(tmp_path):
    big = tmp_path / "big.yaml"
    big.write_text("a: " + "x" * 2000)
    with pytest.raises(AboError, match="larger than"):
        read_yaml(big, max_bytes=1000)
    latin = tmp_path / "latin.yaml"
    latin.write_bytes("task: caf\xe9".encode("latin-1"))
    with pytest.raises(AboError, match="not UTF-8"):
        read_yaml(latin)


def test_atomic_write_leaves_old_file_when_serialising_fails(tmp_path):
    path = write_yaml(tmp_path / "a.yaml", {"ok": 1})
    with pytest.raises(Exception):
        write_yaml(path, {"bad": object()})
    assert read_yaml(path) == {"ok": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["a.yaml"], "no temporary file is left behind"


