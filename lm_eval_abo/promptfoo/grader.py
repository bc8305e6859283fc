"""The grader of model-graded assertions: which model grades, and each call made through the project's
optimizer client (`infra.llm.OptimizerLLM`: litellm, retries, the reply cache), into the grader's line of
the run's ledger.

Which model grades an assertion, first found first:
1. the one given at run time: `--metadata '{"abo_grader": "<litellm model>"}'` (with
   `"abo_grader_api_base"` for a server of your own), for `optimize` and `lm_eval` alike;
2. the config's grader (the assertion's `provider`, else the test's or defaultTest's `options.provider`),
   mapped to litellm at import and kept in the assertion as `grader`;
3. the run's optimizer (with its `--optimizer_args`), when `optimize` runs the task.
`lm_eval` with neither 1 nor 2 stops with one line that says so.

The embedding model of `similar` and `answer-relevance`, first found first: `--metadata abo_embedder` (a
litellm model, with `abo_embedder_api_base`), the config's (the assertion's or test's embedding provider,
mapped at import and kept as `embedder`), else the offline `embedded/all-minilm-l6-v2`. Its calls go through
the same client, into the same grader line.

A run installs its `Graders` (the optimizer as default, the ledger's grader line, the optimizer's cache);
without one (a plain `lm_eval` run) a process-wide one keeps its own count and the default cache folder.
Replies are asked for a whole lm-eval pass at once (`fetch`, concurrently, each distinct request once)
and kept for that pass; a request that fails after its retries counts as a failed grade (promptfoo fails
the assertion), with a warning.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from pathlib import Path

from lm_eval_abo.cost.ledger import Price, Usage
from lm_eval_abo.infra.errors import AboError
from lm_eval_abo.infra.files import user_cache_dir
from lm_eval_abo.infra.llm import CONCURRENCY, OptimizerLLM

log = logging.getLogger("lm_eval_abo")
GRADER_KEY, API_BASE_KEY = "abo_grader", "abo_grader_api_base"
EMBEDDER_KEY, EMBEDDER_BASE_KEY = "abo_embedder", "abo_embedder_api_base"
DEFAULT_EMBEDDER = "embedded/all-minilm-l6-v2"
DEFAULT_ARGS = {"max_tokens": 1024, "temperature": 0.0}  # promptfoo's grading call asks 1024 tokens at most


def _key(model: str, args: dict) -> str:
    return json.dumps([model, sorted((k, str(v)) for k, v in args.items())])


class Graders:
    """The graders of one run (or of a plain lm-eval process): clients by model, the replies of the pass."""

    def __init__(self, default: tuple[str, dict] | None = None, usage: Usage | None = None,
                 cache_dir: str | Path | None = "default", override: tuple[str, dict] | None = None,
                 default_price: Price | None = None, concurrency: int = CONCURRENCY):
        """`default`: (model, args) of the run's optimizer, charged at `default_price` (else litellm's)."""
        self.default, self.override, self.default_price = default, override, default_price
        self.concurrency = concurrency
        self.usage = usage or Usage()
        self.cache_dir = user_cache_dir() / "optimizer" if cache_dir == "default" else cache_dir
        self._clients: dict[str, OptimizerLLM] = {}
        self._replies: dict[str, str | None] = {}
        self._vectors: dict[str, list[float] | None] = {}
        self.embedder_override: tuple[str, dict] | None = None
        self._lock = threading.Lock()

    def set_override(self, metadata: dict) -> None:
        """The grader given at run time in the task's metadata (`--metadata`), if any."""
        model = metadata.get(GRADER_KEY)
        api_base = {"api_base": metadata[API_BASE_KEY]} if metadata.get(API_BASE_KEY) else {}
        self.override = (str(model), api_base) if model else None
        model = metadata.get(EMBEDDER_KEY)
        api_base = {"api_base": metadata[EMBEDDER_BASE_KEY]} if metadata.get(EMBEDDER_BASE_KEY) else {}
        self.embedder_override = (str(model), api_base) if model else None

    def model_of(self, assertion: dict) -> tuple[str, dict]:
        """(litellm model, call arguments) that grades `assertion`."""
        if self.override:
            return self.override
        mapped = assertion.get("grader")
        if mapped:
            return _with_key(mapped)
        if self.default:
            return self.default
        raise AboError(f"a {assertion.get('type')} assertion needs a grader model and the config names none: run it with "
                       f"--metadata '{{\"{GRADER_KEY}\": \"<litellm model>\"}}' (or through lm-eval-abo optimize, whose "
                       "optimizer then grades)")

    def embedder_of(self, assertion: dict) -> tuple[str, dict]:
        """(litellm embedding model, call arguments) that embeds for `assertion`."""
        if self.embedder_override:
            return self.embedder_override
        mapped = assertion.get("embedder")
        return _with_key(mapped) if mapped else (DEFAULT_EMBEDDER, {})

    def client(self, model: str, args: dict) -> OptimizerLLM:
        key = _key(model, args)
        with self._lock:
            if key not in self._clients:
                price = self.default_price if self.default and model == self.default[0] else None
                self._clients[key] = OptimizerLLM(model, {**DEFAULT_ARGS, **args}, cache_dir=self.cache_dir,
                                                  usage=self.usage, price=price, concurrency=self.concurrency)
            return self._clients[key]

    def models(self) -> list[str]:
        """The models that graded so far (their litellm strings, no arguments)."""
        return sorted({client.model for client in self._clients.values() if client.usage.calls})

    def new_pass(self) -> None:
        """Forget the replies and embeddings of the previous pass."""
        self._replies, self._vectors = {}, {}

    def fetch(self, requests: list[tuple], texts: list[tuple[dict, str]] = ()) -> None:
        """Ask every distinct grading request of a pass at once (`requests`: (assertion, messages[, seed])) and
        embed every distinct text (`texts`: (assertion, text)), an embedding model's texts in one call; they
        serve `ask` and `embed` until the next pass."""
        groups: dict[str, tuple[OptimizerLLM, dict[str, tuple[list[dict], int]]]] = {}
        for assertion, messages, *seed in requests:
            client = self.client(*self.model_of(assertion))
            key = _request_key(client, messages, seed[0] if seed else 0)
            if key not in self._replies:
                groups.setdefault(_key(client.model, client.args), (client, {}))[1].setdefault(key, (messages, seed[0] if seed else 0))
        for client, wanted in groups.values():
            keys = list(wanted)
            self._replies.update(zip(keys, client.complete_many([wanted[k] for k in keys], desc="grader")))
        embeds: dict[str, tuple[OptimizerLLM, dict[str, str]]] = {}
        for assertion, text in texts:
            client = self.client(*self.embedder_of(assertion))
            key = _request_key(client, text)
            if key not in self._vectors:
                embeds.setdefault(_key(client.model, client.args), (client, {}))[1].setdefault(key, text)
        for client, wanted in embeds.values():
            self._vectors.update(zip(wanted, self._embed(client, list(wanted.values()))))

    def known(self, assertion: dict, messages: list[dict], seed: int = 0) -> tuple[bool, str | None]:
        """(asked already, the reply) of a grading request in this pass, without asking."""
        key = _request_key(self.client(*self.model_of(assertion)), messages, seed)
        return key in self._replies, self._replies.get(key)

    def ask(self, assertion: dict, messages: list[dict], seed: int = 0) -> str | None:
        """The grader's reply to one grading request (None: the call failed after its retries); `seed` tells
        apart requests asked more than once (answer-relevance asks three times)."""
        client = self.client(*self.model_of(assertion))
        key = _request_key(client, messages, seed)
        if key not in self._replies:
            try:
                self._replies[key] = client.complete(messages, seed=seed)
            except AboError:
                raise
            except Exception as e:  # noqa: BLE001 (after retries: promptfoo fails the assertion when its grader errs)
                log.warning("a grader call failed after %d retries; the assertion fails: %s", client.retries,
                            client.describe(e))
                self._replies[key] = None
        return self._replies[key]

    def embed(self, assertion: dict, text: str) -> list[float] | None:
        """The embedding of `text` by the assertion's embedding model (None: the call failed)."""
        client = self.client(*self.embedder_of(assertion))
        key = _request_key(client, text)
        if key not in self._vectors:
            self._vectors[key] = self._embed(client, [text])[0]
        return self._vectors[key]

    @staticmethod
    def _embed(client: OptimizerLLM, texts: list[str]) -> list[list[float] | None]:
        try:
            return client.embed(texts)
        except AboError:
            raise
        except Exception as e:  # noqa: BLE001 (after retries: promptfoo fails the assertion)
            log.warning("an embedding call failed after %d retries; its assertions fail: %s", client.retries,
                        client.describe(e))
            return [None] * len(texts)


def _request_key(client: OptimizerLLM, *request) -> str:
    return json.dumps([client.model, sorted((k, str(v)) for k, v in client.args.items()), *request], ensure_ascii=False)


def _with_key(mapped: dict) -> tuple[str, dict]:
    """A model mapped at import as (litellm model, call arguments), its key read from its environment variable."""
    args = {k: v for k, v in mapped.items() if k not in ("model", "key_env")}
    if mapped.get("key_env") and os.environ.get(mapped["key_env"]):
        args["api_key"] = os.environ[mapped["key_env"]]
    return mapped["model"], args


_CURRENT = Graders()


def install(graders: Graders) -> Graders:
    """Make `graders` grade from now on (a run installs its own); returns the one it replaces."""
    global _CURRENT
    previous, _CURRENT = _CURRENT, graders
    return previous


def current() -> Graders:
    return _CURRENT
