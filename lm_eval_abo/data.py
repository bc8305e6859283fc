"""The abo tasks' dataset loaders at the path task YAMLs written before `tasks/datasets.py` name
(`custom_dataset: !function lm_eval_abo.data.synthetic`)."""

from lm_eval_abo.tasks.datasets import bbh, bigbench, gsm8k, synthetic

__all__ = ["bbh", "bigbench", "gsm8k", "synthetic"]
