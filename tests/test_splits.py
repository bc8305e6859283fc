"""Train, dev and test for any task: a task's own splits, else carved ones (seeded, disjoint)."""

from types import SimpleNamespace

import pytest

from lm_eval_abo.infra.errors import AboError
from lm_eval_abo.tasks import splits


def config(train=None, validation=None, test="test"):
    return SimpleNamespace(task="t", training_split=train, validation_split=validation, test_split=test)


def test_a_task_with_only_a_test_split_gets_train_and_dev_carved_from_it():
    plan = splits.plan(config(), {"test": 250}, seed=7, train_limit=16, dev_limit=10, test_limit=None)
    train, dev, test = (set(plan[s].indices) for s in splits.LOGICAL)
    assert (len(train), len(dev), len(test)) == (16, 10, 224) and not (train & dev or train & test or dev & test)
    assert train | dev | test == set(range(250)) and plan.carved() == {"train": "test", "dev": "test"}
    assert list(plan.test.indices) == sorted(test), "the held-out rest, in the task's order"
    again = splits.plan(config(), {"test": 250}, seed=7, train_limit=16, dev_limit=10, test_limit=None)
    assert again == plan, "the same seed carves the same documents"
    other = splits.plan(config(), {"test": 250}, seed=8, train_limit=16, dev_limit=10, test_limit=None)
    assert other.train != plan.train
    limited = splits.plan(config(), {"test": 250}, seed=7, train_limit=16, dev_limit=10, test_limit=30)
    assert limited.test.indices == plan.test.indices[:30] and limited.train == plan.train


def test_all_means_fifty_carved():
    plan = splits.plan(config(), {"test": 250}, seed=1, train_limit=None, dev_limit=None, test_limit=None)
    assert (len(plan.train.indices), len(plan.dev.indices), len(plan.test.indices)) == (50, 50, 150)


def test_a_missing_dev_split_comes_out_of_train_and_test_stays_whole():
    plan = splits.plan(config(train="train"), {"train": 100, "test": 40}, seed=1, train_limit=None, dev_limit=10, test_limit=None)
    assert plan.dev.split == "train" and plan.carved() == {"dev": "train"}
    assert len(plan.train.indices) == 90 and not set(plan.train.indices) & set(plan.dev.indices)
    assert plan.test == splits.Part("test", tuple(range(40)))


def test_validation_is_dev_and_train_comes_out_of_it_when_there_is_a_test_split():
    plan = splits.plan(config(validation="validation"), {"validation": 30, "test": 40}, seed=1, train_limit=8,
                       dev_limit=None, test_limit=None)
    assert plan.train.split == plan.dev.split == "validation" and plan.carved() == {"train": "validation"}
    assert len(plan.dev.indices) == 22 and len(plan.test.indices) == 40


def test_a_task_evaluated_on_validation_uses_it_as_test():
    plan = splits.plan(config(train="train", validation="validation", test=None), {"train": 20, "validation": 30},
                       seed=1, train_limit=None, dev_limit=5, test_limit=None)
    assert plan.test.split == "validation" and plan.dev.split == "train" and len(plan.test.indices) == 30


@pytest.mark.parametrize("sizes, limits, problem", [
    ({"test": 20}, (16, 10), "too few to carve 10 dev documents"),
    ({"test": 26}, (16, 10), "too few to carve 10 dev documents"),
])
def test_too_small_a_task_is_one_line_that_says_which_limit_to_lower(sizes, limits, problem):
    with pytest.raises(AboError, match=problem) as err:
        splits.plan(config(), sizes, seed=1, train_limit=limits[0], dev_limit=limits[1], test_limit=None)
    assert "--dev-limit" in str(err.value)


def test_no_evaluation_split_is_refused():
    with pytest.raises(AboError, match="neither a test_split nor a validation_split"):
        splits.plan(config(train="train", test=None), {"train": 10}, seed=1, train_limit=None, dev_limit=None, test_limit=None)


@pytest.mark.parametrize("doc, expected", [
    ({"id": 17}, "17"), ({"id": "q-3"}, "q-3"),  # the document's own id
    ({"id": True}, "dev:4"), ({"id": 1.5}, "dev:4"), ({"id": None}, "dev:4"), ({"ID": "x"}, "dev:4"), ({}, "dev:4"),
])
def test_a_document_is_recorded_by_its_own_id_else_by_split_and_position(doc, expected):
    assert splits.doc_id(doc, "dev", 4) == expected


def test_the_splits_of_a_config_read_from_yaml_and_of_one_missing_the_fields():
    read = {"task": "t", "training_split": "train", "validation_split": "validation", "test_split": "test"}
    assert splits.task_splits(read) == {"train": "train", "dev": "validation", "test": "test"}
    assert splits.task_splits({"task": "t", "validation_split": "validation"}) == {"train": None, "dev": None,
                                                                                  "test": "validation"}
    assert splits.task_splits(SimpleNamespace(task="t", test_split="test")) == \
        {"train": None, "dev": None, "test": "test"}
    assert splits.task_splits(config(train="test")) == {"train": None, "dev": None, "test": "test"}, \
        "a training split that is also the evaluated one is not train"
    with pytest.raises(AboError) as err:
        splits.task_splits({"task": "mine", "training_split": "train"})
    assert str(err.value) == ("task 'mine' has neither a test_split nor a validation_split, so lm-eval has no documents "
                              "to evaluate; set test_split: <split> in its YAML to one of its dataset's splits")


def test_carving_may_leave_the_donor_a_single_document():
    plan = splits.plan(config(), {"test": 27}, seed=3, train_limit=16, dev_limit=10, test_limit=None)
    assert (len(plan.train.indices), len(plan.dev.indices), len(plan.test.indices)) == (16, 10, 1)


def test_an_empty_own_split_is_refused_by_name():
    with pytest.raises(AboError) as err:
        splits.plan(config(train="train", validation="validation"), {"train": 5, "validation": 0, "test": 10}, seed=1,
                    train_limit=None, dev_limit=None, test_limit=None)
    assert str(err.value) == "the dev split of task 't' is empty"
