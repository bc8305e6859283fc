"""Import paths that users' files and scripts name, kept where a module moved: task YAMLs written with
`!function lm_eval_abo.data.<loader>`, and scripts that import `optimize` from `lm_eval_abo.optimize`."""

from lm_eval.tasks import TaskManager


def test_the_dataset_loaders_at_their_old_path_are_the_same_functions():
    from lm_eval_abo import data
    from lm_eval_abo.tasks import datasets

    assert (data.synthetic, data.bbh, data.bigbench, data.gsm8k) == (
        datasets.synthetic, datasets.bbh, datasets.bigbench, datasets.gsm8k)


def test_a_task_yaml_naming_the_old_loader_path_builds(tmp_path):
    (tmp_path / "old_counting.yaml").write_text(
        "task: old_counting\ncustom_dataset: !function lm_eval_abo.data.synthetic\ndataset_kwargs:\n"
        "  kind: object_counting\n  abo_n_test: 5\noutput_type: generate_until\ntest_split: test\n"
        "doc_to_text: '{{input}}'\ndoc_to_target: '{{target}}'\nmetric_list:\n  - metric: exact_match\n")
    task = TaskManager(include_path=str(tmp_path), include_defaults=False).load(["old_counting"])["tasks"]["old_counting"]
    assert len(task.test_docs()) == 5 and task.test_docs()[0]["input"].startswith("I have")


def test_optimize_at_its_old_path_is_the_run_function():
    from lm_eval_abo import optimize as old
    from lm_eval_abo.config import OptimizeConfig
    from lm_eval_abo.run import optimize as run

    assert old.optimize is run.optimize and old.OptimizeConfig is OptimizeConfig and old.Outcome is run.Outcome
