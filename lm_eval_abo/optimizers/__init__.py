"""The methods, each a small strategy for the one shared search loop (search.py)."""

from lm_eval_abo.optimizers.abo import Abo
from lm_eval_abo.optimizers.ape import Ape
from lm_eval_abo.optimizers.apo import Apo, ApoSum
from lm_eval_abo.optimizers.gepa import Gepa
from lm_eval_abo.optimizers.opro import Opro
from lm_eval_abo.optimizers.promptagent import PromptAgent

METHODS = {m.name: m for m in (Ape(), Apo(), ApoSum(), PromptAgent(), Opro(), Abo(), Abo("abo-ablation", demos=0),
                               Gepa())}
