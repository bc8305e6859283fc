"""lm_eval_abo: Automatic Behavior Optimization and reflection-based prompt optimizers for lm-eval."""

__version__ = "0.1.0"
