import pytest

from lm_eval_abo.infra.errors import AboError
from lm_eval_abo.tasks import datasets


def test_synthetic_loader_defaults_and_knobs():
    ds = datasets.synthetic(kind="object_counting", pretrained="ignored-model-arg")
    assert {k: len(v) for k, v in ds.items()} == {"train": 50, "dev": 50, "test": 200}
    assert set(ds["train"].column_names) == {"id", "input", "target"}
    small = datasets.synthetic(kind="navigate", abo_n_train="3", abo_n_dev=2, abo_n_test=4, abo_seed=9, abo_difficulty=3)
    assert {k: len(v) for k, v in small.items()} == {"train": 3, "dev": 2, "test": 4}


@pytest.mark.parametrize("bad", [{"abo_n_train": 0}, {"abo_n_dev": "many"}, {"abo_difficulty": 7}])
def test_synthetic_loader_rejects_bad_knobs(bad):
    with pytest.raises(AboError):
        datasets.synthetic(kind="navigate", **bad)


def test_partition_is_seeded_and_keeps_the_official_test_split():
    pool = [{"id": str(i), "input": str(i), "target": "x"} for i in range(100)]
    official = [{"id": f"t{i}", "input": f"t{i}", "target": "y"} for i in range(7)]
    a = datasets.partition(pool, official, 1, 10, 5, None)
    assert a == datasets.partition(pool, official, 1, 10, 5, None)
    assert a != datasets.partition(pool, official, 2, 10, 5, None)
    assert a["test"] == official and len(a["train"]) == 10 and len(a["dev"]) == 5
    pooled = datasets.partition(pool, None, 1, 10, 5, None)
    ids = [{r["id"] for r in pooled[s]} for s in ("train", "dev", "test")]
    assert len(ids[2]) == 85 and not (ids[0] & ids[1] or ids[0] & ids[2] or ids[1] & ids[2])
    with pytest.raises(AboError, match="fewer than"):
        datasets.partition(pool[:10], None, 1, 8, 5, None)


def test_bbh_local_copy_is_partitioned(bbh_dir):
    ds = datasets.bbh(subset="navigate", abo_data_dir=str(bbh_dir))
    assert (len(ds["train"]), len(ds["dev"]), len(ds["test"])) == (50, 50, 150)
    assert set(ds["test"]["target"]) == {"Yes", "No"}
    snarks = datasets.bbh(subset="snarks", abo_data_dir=str(bbh_dir), abo_n_test=20)
    assert len(snarks["test"]) == 20 and snarks["test"][0]["target"] in ("(A)", "(B)")


def test_offline_hub_failure_names_the_dataset_and_the_local_copy_option():
    for loader, kwargs, name in [
        (datasets.bbh, {"subset": "navigate"}, "SaylorTwift/bbh"),
        (datasets.bigbench, {"subset": "question_selection"}, "hails/bigbench"),
        (datasets.gsm8k, {}, "openai/gsm8k"),
    ]:
        with pytest.raises(AboError) as err:
            loader(**kwargs)
        message = str(err.value)
        assert name in message and "abo_data_dir" in message and "\n" not in message


def test_missing_local_copy_is_one_clear_error(tmp_path):
    with pytest.raises(AboError, match="cannot read the local copy"):
        datasets.bbh(subset="navigate", abo_data_dir=str(tmp_path))


def test_bigbench_and_gsm8k_local_copies(tmp_path):
    import json

    (tmp_path / "question_selection").mkdir()
    examples = [{"input": f"context {i}", "target_scores": {"Who?": 0, "What?": 1, "Why?": 0}} for i in range(120)]
    (tmp_path / "question_selection" / "task.json").write_text(json.dumps({"examples": examples}))
    ds = datasets.bigbench(subset="question_selection", abo_data_dir=str(tmp_path))
    row = ds["train"][0]
    assert row["target"] == "(B)" and "(B) What?" in row["input"]
    rows = [json.dumps({"question": f"q{i}", "answer": f"work\n#### 1,00{i % 10}"}) for i in range(120)]
    (tmp_path / "train.jsonl").write_text("\n".join(rows))
    (tmp_path / "test.jsonl").write_text("\n".join(rows[:30]))
    ds = datasets.gsm8k(abo_data_dir=str(tmp_path))
    assert len(ds["test"]) == 30 and ds["test"][0]["target"] == "1000"
