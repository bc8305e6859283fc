"""PromptAgent (Wang et al. 2024): its state transition (`transition`), its Monte Carlo tree search as the
source runs it (`tree`, the method `promptagent` in `mcts`) and this project's beam variant
(`promptagent-beam` in `beam`)."""

from lm_eval_abo.optimizers.promptagent.beam import PromptAgentBeam
from lm_eval_abo.optimizers.promptagent.mcts import PromptAgent

__all__ = ["PromptAgent", "PromptAgentBeam"]
