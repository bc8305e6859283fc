"""`lm-eval-abo diagnose`: the paper's two studies of reflection-based optimization, as commands.

reflection (`studies.reflection`): does the optimizer read the errors it reflects on?
refinement (`studies.refinement`): does one refinement step change what the target does, beside
resampling around each refinement and resampling from the parent?
"""

from lm_eval_abo.studies.refinement import refinement_study
from lm_eval_abo.studies.reflection import reflection_study

__all__ = ["refinement_study", "reflection_study"]
