"""What each model costs: the target's and the optimizer's price in US dollars per million tokens, given
on the command line, else from litellm's cost map (the copy installed with litellm, read offline), else $0
for a model on the user's own hardware; None where no price is known (tokens are counted anyway)."""

from __future__ import annotations

from dataclasses import dataclass

from lm_eval_abo.cost.ledger import Caps, Price
from lm_eval_abo.infra.errors import AboError

# lm-eval backends that run the model on the user's own hardware: $0 unless --target-price says otherwise
LOCAL_BACKENDS = frozenset({"abo-embedded", "hf", "huggingface", "vllm", "gguf", "ggml", "sglang", "hf-multimodal",
                            "vllm-vlm"})
# backends for a server of the user's own: $0 too, unless litellm's cost map knows the model name it serves
SELF_HOSTED = frozenset({"local-completions", "local-chat-completions"})


def litellm_price(model: str) -> Price | None:
    """The price litellm's cost map gives `model`, if any."""
    import litellm

    try:
        info = litellm.get_model_info(model)
    except Exception:  # litellm raises a bare Exception for a model it has not mapped
        return None
    given, made = info.get("input_cost_per_token"), info.get("output_cost_per_token")
    if given is None and made is None:
        return None
    return Price((given or 0.0) * 1e6, (made or 0.0) * 1e6, "litellm")


def target_price(model: str, model_args: dict, given: tuple[float, float] | None = None) -> Price | None:
    """`given` (--target-price), else litellm's price of the target's model name, else $0 for a backend that
    runs locally; None (cost unknown) for a remote model litellm has no price for."""
    if given is not None:
        return Price(*given, "--target-price")
    name = model_args.get("model") or model_args.get("pretrained")
    if model not in LOCAL_BACKENDS and isinstance(name, str):
        known = litellm_price(name)
        if known is not None:
            return known
    return Price(0.0, 0.0, "local") if model in LOCAL_BACKENDS | SELF_HOSTED else None


def optimizer_price(optimizer: str, given: tuple[float, float] | None = None) -> Price | None:
    """`given` (--optimizer-price), else $0 for an embedded model, else litellm's price (None: unknown)."""
    if given is not None:
        return Price(*given, "--optimizer-price")
    if optimizer.startswith("embedded/"):
        return Price(0.0, 0.0, "local")
    return litellm_price(optimizer)


@dataclass(frozen=True)
class Prices:
    """A run's two prices (None: unknown)."""

    target: Price | None
    optimizer: Price | None

    def check(self, caps: Caps, target: str, optimizer: str) -> Prices:
        """These prices, when `caps` can be kept with them: a dollar cap needs both."""
        if caps.max_cost is not None:
            for side, price, name in (("target", self.target, target), ("optimizer", self.optimizer, optimizer)):
                if price is None:
                    raise AboError(f"--max-cost needs the {side}'s price, and litellm's cost map has none for {name}: "
                                   f"give --{side}-price IN,OUT (US dollars per million tokens)")
        return self

    def shown(self) -> dict[str, str]:
        return {side: price.text() if price else "unknown (tokens only)"
                for side, price in (("target", self.target), ("optimizer", self.optimizer))}
