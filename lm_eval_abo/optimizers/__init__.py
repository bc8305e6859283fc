"""The methods, each a small strategy for the one shared search loop (search.py), and how a method's
parameters are resolved: its defaults or its paper preset, with --method-args over them."""

from __future__ import annotations

from lm_eval_abo.infra.errors import AboError
from lm_eval_abo.infra.flags import given
from lm_eval_abo.optimizers.abo import Abo
from lm_eval_abo.optimizers.ape import Ape
from lm_eval_abo.optimizers.apo import Apo, ApoSum
from lm_eval_abo.optimizers.base import Method
from lm_eval_abo.optimizers.gepa import Gepa
from lm_eval_abo.optimizers.opro import Opro
from lm_eval_abo.optimizers.promptagent import PromptAgent, PromptAgentBeam

METHODS: dict[str, Method] = {m.name: m for m in (Ape(), Apo(), ApoSum(), PromptAgent(), PromptAgentBeam(), Opro(),
                                                  Abo(), Abo("abo-ablation", demos=0), Gepa())}


def resolve(name: str, preset: str, values: dict):
    """The method `name` and its parameters: the paper's under the paper preset, else its defaults, with
    `values` (--method-args) given over them; one line for an unknown method or a bad value."""
    if name not in METHODS:
        raise AboError(f"unknown method {name!r}; known: {', '.join(METHODS)}")
    method = METHODS[name]
    return method, given(method.paper if preset == "paper" else method.params, values, name)
