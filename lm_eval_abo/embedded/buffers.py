"""How the embedded models are loaded into llama.cpp: with or without its extra buffer types, and a
test run in a child process before the first load, so that a native crash is one line, not a bare
"Segmentation fault".

llama.cpp's extra buffer types hold weights repacked for a CPU's own kernels: AMX tiles on Intel CPUs
that report `amx_int8`, CPU_REPACK (Q4/Q8 interleaved for AVX2) elsewhere. On some Sapphire-Rapids-class
CPUs the AMX buffer segfaults at the first decode, in-process and behind llama-cpp-python's server alike
(ggml-org/llama.cpp#20824). `use_extra_bufts = False` in llama.cpp's model parameters avoids it; `Llama()`
takes no argument for it, so `loading` sets it on the parameters `Llama()` asks llama.cpp for.

The rule: off where the CPU reports AMX, on elsewhere (`LM_EVAL_ABO_EXTRA_BUFFERS=on|off` forces it,
for a CPU that crashes in another extra buffer). Measured on a 2-core AMD EPYC with AVX2 and no AMX
(llama.cpp: AVX2, REPACK), llama-cpp-python 0.3.36, 2 threads, a 531-token prompt then 64 greedy tokens,
median of 3 alternated runs each, load average 0.13 at the start (`python bench/extra_buffers.py`):

    model               extra buffers   prompt tok/s   generation tok/s   off/on (prompt, generation)
    gemma-3-270m        on (CPU_REPACK)     341.3           55.8
    gemma-3-270m        off                 292.6           51.7            0.86, 0.93
    qwen2.5-coder-0.5b  on (CPU_REPACK)     102.4           35.2
    qwen2.5-coder-0.5b  off                  94.2           33.2            0.92, 0.94

Off everywhere would cost AVX2 machines 7-14% of their speed and change the models' greedy replies
there (other kernels round differently: 7 of 10 greedy 96-token replies of the two models differed,
on and off), so extra buffers go off only where the CPU reports AMX.

The test run (`probe`): before a process first loads a model, a child process loads it with the same
setting and decodes a few tokens; a child killed by a signal is a native crash, reported in one line
naming the model, the llama.cpp build and the setting that avoids it. Its answer is kept per CPU, build,
model file and setting in the user's cache, so it runs once per machine (1.35 s for gemma-3-270m, 1.39 s
for qwen2.5-coder-0.5b, measured by the same benchmark).
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
from contextlib import contextmanager
from functools import cache
from importlib import metadata
from pathlib import Path

from lm_eval_abo.infra.errors import AboError
from lm_eval_abo.infra.files import user_cache_dir, write_text_atomic

ENV = "LM_EVAL_ABO_EXTRA_BUFFERS"  # auto (default), on, off
SETTINGS = ("auto", "on", "off")
UPSTREAM = "ggml-org/llama.cpp#20824"
PROBE_TIMEOUT_S = 300
CPUINFO = Path("/proc/cpuinfo")
_swap = threading.Lock()


def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags as the kernel reports them (empty where there is no /proc/cpuinfo)."""
    try:
        text = CPUINFO.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return frozenset()
    for line in text.splitlines():
        if line.split(":", 1)[0].strip() in ("flags", "Features"):
            return frozenset(line.split(":", 1)[1].split())
    return frozenset()


def setting() -> str:
    value = os.environ.get(ENV, "auto").strip().lower() or "auto"
    if value not in SETTINGS:
        raise AboError(f"{ENV}={value!r}: use one of {', '.join(SETTINGS)}")
    return value


def use_extra_buffers() -> bool:
    """Whether llama.cpp may put weights into its extra buffer types on this machine (see the module's doc)."""
    chosen = setting()
    if chosen != "auto":
        return chosen == "on"
    return not any(flag.startswith("amx") for flag in cpu_flags())


@contextmanager
def loading(extra_buffers: bool):
    """Within the block, `llama_cpp.Llama(...)` loads its model with `use_extra_bufts = extra_buffers`.

    `Llama.__init__` starts from `llama_model_default_params()`; the block hands it parameters with the
    field set. Loads are serialised here, so no other load sees the swap."""
    import llama_cpp.llama as llama_module

    module = llama_module.llama_cpp
    with _swap:
        default = module.llama_model_default_params

        def params():
            chosen = default()
            chosen.use_extra_bufts = extra_buffers
            return chosen

        module.llama_model_default_params = params
        try:
            yield
        finally:
            module.llama_model_default_params = default


def build() -> str:
    """The llama.cpp build, as a crash report names it: the binding's version and llama.cpp's CPU line."""
    import llama_cpp

    info = llama_cpp.llama_print_system_info().decode("utf-8", "replace").strip().rstrip("|").strip()
    return f"llama-cpp-python {metadata.version('llama-cpp-python')}; {info}"


def crash_text(model: str, signal_number: int, extra_buffers: bool) -> str:
    """The one line a native crash becomes."""
    try:
        name = signal.Signals(signal_number).name
    except ValueError:
        name = f"signal {signal_number}"
    if extra_buffers:
        avoid = f"set {ENV}=off to load models without llama.cpp's extra buffer types (known crash: {UPSTREAM})"
    else:
        avoid = ("extra buffer types were already off; reinstall llama-cpp-python for a generic CPU: "
                 "CMAKE_ARGS=-DGGML_NATIVE=OFF pip install --no-cache-dir --force-reinstall llama-cpp-python==0.3.36")
    return f"llama.cpp crashed ({name}) in native code running {model} ({build()}): {avoid}"


def _probe_file() -> Path:
    return user_cache_dir() / "llama-probes.json"


def _probe_key(path: Path, extra_buffers: bool) -> str:
    stat = path.stat()
    identity = [sorted(cpu_flags()), build(), path.name, stat.st_size, extra_buffers]
    return hashlib.sha256(json.dumps(identity).encode()).hexdigest()[:24]


def probe(model: str, path: Path, extra_buffers: bool) -> None:
    """Run `model` once in a child process with this setting (unless this machine has already done so);
    a child killed by a signal raises the crash's one line. Any other failure is left to the real load,
    whose own error says more."""
    key = _probe_key(path, extra_buffers)
    known = _known()
    if key in known:
        if known[key] != 0:
            raise AboError(crash_text(model, -known[key], extra_buffers))
        return
    command = [sys.executable, "-m", "lm_eval_abo.embedded.probe", str(path), "on" if extra_buffers else "off"]
    try:
        code = subprocess.run(command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              timeout=PROBE_TIMEOUT_S).returncode
    except subprocess.TimeoutExpired:
        return
    if code < 0 or code == 0:
        _remember(key, code)
    if code < 0:
        raise AboError(crash_text(model, -code, extra_buffers))


@cache
def checked(model: str, path: Path, extra_buffers: bool) -> None:
    """`probe`, once per process and setting."""
    probe(model, path, extra_buffers)


def _known() -> dict[str, int]:
    try:
        found = json.loads(_probe_file().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return found if isinstance(found, dict) else {}


def _remember(key: str, code: int) -> None:
    try:
        write_text_atomic(_probe_file(), json.dumps({**_known(), key: code}, indent=1) + "\n")
    except OSError:  # a cache that cannot be written only means the probe runs again next time
        pass
