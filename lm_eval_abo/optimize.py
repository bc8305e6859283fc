"""`optimize` at the path scripts written before `run/` import it from
(`from lm_eval_abo.optimize import optimize`)."""

from lm_eval_abo.config import OptimizeConfig
from lm_eval_abo.run.optimize import Outcome, optimize

__all__ = ["OptimizeConfig", "Outcome", "optimize"]
