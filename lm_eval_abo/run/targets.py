"""The target models of a run as lm-eval's registry names them (`Target`: `--model`, `--model_args` and how it
is loaded), checked before anything loads, and loaded one at a time for the runs and evaluations of several
models (`Targets`)."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from importlib import metadata

from lm_eval_abo.infra.errors import AboError
from lm_eval_abo.infra.flags import parse_pairs
from lm_eval_abo.infra.redact import redact_arg_string


@dataclass(frozen=True)
class Target:
    """The target model as lm-eval's registry names it: `--model`, `--model_args` and how it is loaded."""

    model: str
    model_args: str
    batch_size: str | int = 1
    device: str | None = None
    chat: bool = False  # --apply_chat_template

    @property
    def args(self) -> dict:
        return parse_pairs(self.model_args, "--model_args")  # a typo fails here, not inside lm-eval

    def backend(self):
        """The lm-eval model backend, checked without loading anything."""
        import lm_eval.models  # noqa: F401  (built-in backends before the plugin's own)
        from lm_eval.api.registry import get_model

        self.args
        if self.model == "abo-embedded":
            import lm_eval_abo.embedded.backend  # noqa: F401  (registers the embedded backend)
        try:
            backend = get_model(self.model)
        except (KeyError, ValueError):
            raise AboError(f"unknown lm-eval model backend {self.model!r} (see lm-eval's model list)") from None
        except ImportError as e:  # lm-eval imports a backend's packages when it is first named
            raise missing_package(self.model, e) from None
        if _chat_only(backend) and not self.chat:
            raise AboError(f"--model {self.model} sends chat messages: add --apply_chat_template")
        return backend

    def load(self):
        """The target model, loaded through lm-eval's registry."""
        backend = self.backend()
        try:
            lm = backend.create_from_arg_string(self.model_args, {"batch_size": self.batch_size, "device": self.device})
            getattr(lm, "api_key", None)  # lm-eval's API backends read their key at the first request: read it now
            return lm
        except AboError:
            raise
        except ImportError as e:
            raise missing_package(self.model, e) from None
        except (TypeError, ValueError, AssertionError) as e:  # lm-eval checks a backend's arguments with asserts too
            lines = str(e).strip().splitlines() or [type(e).__name__]
            given = f" --model_args {redact_arg_string(self.model_args)}" if self.model_args else ""
            raise AboError(f"--model {self.model}{given}: {lines[0]}") from None

    def cache(self, use_cache: str | None) -> str | None:
        """lm-eval's cache keys requests by prompt only, so each target model gets its own file."""
        if not use_cache:
            return None
        return f"{use_cache}_{hashlib.sha256(f'{self.model}|{self.model_args}'.encode()).hexdigest()[:12]}"


def missing_package(model: str, error: ImportError) -> AboError:
    """A backend whose Python packages are not installed, with the lm-eval extra that installs them."""
    module = (error.name or "").split(".")[0]
    extras = [m.group(2) for line in metadata.requires("lm_eval") or []
              if (m := re.match(r"([A-Za-z0-9_.\-]+).*extra == \"([^\"]+)\"", line))
              and re.sub(r"[-_.]+", "_", m.group(1)).lower() == module.lower()]
    how = f"pip install 'lm_eval[{extras[0]}]'" if extras else f"pip install {module}" if module else "install its packages"
    return AboError(f"--model {model} needs the Python package {module or '?'}, which is not installed: {how}")


def _chat_only(backend) -> bool:
    """A backend that talks to a chat endpoint (lm-eval's chat-completions family)."""
    try:
        from lm_eval.models.openai_completions import LocalChatCompletion
    except ImportError:
        return False
    return isinstance(backend, type) and issubclass(backend, LocalChatCompletion)


class Targets:
    """Targets loaded one at a time for the runs and evaluations of several models: the same target again is
    the loaded one; another releases it first (two large models need not fit at once)."""

    def __init__(self):
        self.target: Target | None = None
        self.lm = None

    def get(self, target: Target):
        if target != self.target:
            self.target = self.lm = None
            self.lm, self.target = target.load(), target
        return self.lm
