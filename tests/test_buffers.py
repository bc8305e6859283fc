"""llama.cpp's extra buffer types: off where the CPU reports AMX, in-process and behind `serve`, checked in the
real llama.cpp load log with only the CPU report faked; a native crash as one line."""

import json
import re
import subprocess
import sys
import urllib.request

import pytest

from lm_eval_abo.embedded import buffers, llama, serve
from lm_eval_abo.embedded.models import DEFAULT_TARGET, model_path
from lm_eval_abo.infra.errors import AboError

AMX_CPU = frozenset({"fpu", "sse2", "avx2", "avx512f", "amx_bf16", "amx_tile", "amx_int8"})
AVX2_CPU = frozenset({"fpu", "sse2", "avx", "avx2", "fma", "f16c"})
# what llama.cpp logs for weights it puts into an extra buffer type (CPU_REPACK on AVX2, AMX on AMX CPUs)
EXTRA_BUFFER = re.compile(r"(CPU_REPACK|AMX) model buffer size")
MAPPED = re.compile(r"CPU_Mapped model buffer size")


@pytest.fixture
def probes(tmp_path, monkeypatch):
    """The test runs' answers kept apart from the user's cache (the faked CPUs would otherwise stay there)."""
    monkeypatch.setattr(buffers, "_probe_file", lambda: tmp_path / "llama-probes.json")
    buffers.checked.cache_clear()
    yield tmp_path / "llama-probes.json"
    buffers.checked.cache_clear()


def fake_cpu(monkeypatch, flags):
    monkeypatch.delenv(buffers.ENV, raising=False)
    monkeypatch.setattr(buffers, "cpu_flags", lambda: flags)


def test_the_rule_and_its_switch(monkeypatch):
    fake_cpu(monkeypatch, AMX_CPU)
    assert buffers.use_extra_buffers() is False
    fake_cpu(monkeypatch, AVX2_CPU)
    assert buffers.use_extra_buffers() is True
    monkeypatch.setenv(buffers.ENV, "off")
    assert buffers.use_extra_buffers() is False
    fake_cpu(monkeypatch, AMX_CPU)
    monkeypatch.setenv(buffers.ENV, "ON")
    assert buffers.use_extra_buffers() is True
    monkeypatch.setenv(buffers.ENV, "sometimes")
    with pytest.raises(AboError, match="LM_EVAL_ABO_EXTRA_BUFFERS='sometimes': use one of auto, on, off"):
        buffers.use_extra_buffers()


def test_cpu_flags_are_read_from_the_kernel_report(tmp_path, monkeypatch):
    report = tmp_path / "cpuinfo"
    report.write_text("processor\t: 0\nmodel name\t: Xeon\nflags\t\t: fpu avx2 amx_tile amx_int8\n\nprocessor\t: 1\n")
    monkeypatch.setattr(buffers, "CPUINFO", report)
    assert buffers.cpu_flags() == {"fpu", "avx2", "amx_tile", "amx_int8"}
    monkeypatch.setattr(buffers, "CPUINFO", tmp_path / "absent")
    assert buffers.cpu_flags() == frozenset()


@pytest.mark.slow
def test_a_cpu_with_amx_loads_the_model_without_extra_buffers(monkeypatch, probes):
    fake_cpu(monkeypatch, AMX_CPU)
    with llama.captured_log() as log:
        model = llama.open_model(DEFAULT_TARGET, 512)
    try:
        assert any(MAPPED.search(line) for line in log), "llama.cpp's load log was not captured"
        assert not [line for line in log if EXTRA_BUFFER.search(line)]
        text = model.create_completion("Q: 2+2=?\nA:", max_tokens=4, temperature=0.0)["choices"][0]["text"]
        assert text.strip()
    finally:
        model.close()
    assert list(json.loads(probes.read_text()).values()) == [0], "the test run before the first load did not run"


@pytest.mark.slow
def test_the_log_check_sees_extra_buffers_when_they_are_on():
    """The control of the test above: with the field on, llama.cpp does log an extra buffer (this build
    repacks on AVX2 and on AMX alike); loading alone decodes nothing, so even an AMX CPU does not crash."""
    import llama_cpp

    system = llama_cpp.llama_print_system_info().decode()
    if "REPACK = 1" not in system and "AMX" not in system:
        pytest.skip("this llama.cpp build has no extra buffer type for this CPU")
    llama_cpp.llama_log_set(llama._log_errors_only(), None)
    with llama.captured_log() as log, buffers.loading(True):
        model = llama_cpp.Llama(model_path=str(model_path(DEFAULT_TARGET)), n_ctx=512, n_threads=2, verbose=False)
    model.close()
    assert [line for line in log if EXTRA_BUFFER.search(line)]


@pytest.mark.slow
def test_serve_starts_its_server_without_extra_buffers_on_a_cpu_with_amx(monkeypatch, probes):
    fake_cpu(monkeypatch, AMX_CPU)
    server = serve.start(DEFAULT_TARGET)
    try:
        body = json.dumps({"model": DEFAULT_TARGET, "prompt": "Q: 2+2=?\nA:", "max_tokens": 4, "temperature": 0}).encode()
        request = urllib.request.Request(f"{server.base_url}/completions", body, {"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=120) as reply:
            assert json.load(reply)["choices"][0]["text"].strip()
        log = server.log_text().splitlines()
        assert any(MAPPED.search(line) for line in log), "the server's load log was not captured"
        assert not [line for line in log if EXTRA_BUFFER.search(line)]
    finally:
        serve.stop(server)


def segfaulting_probe(monkeypatch):
    """A test run whose child dies of a real SIGSEGV (the native crash, without a CPU that has it)."""
    real_run = subprocess.run

    def run(command, **kwargs):
        return real_run([sys.executable, "-c", "import ctypes; ctypes.string_at(0)"], **kwargs)

    monkeypatch.setattr(buffers.subprocess, "run", run)


def test_a_native_crash_in_the_test_run_is_one_line_naming_the_model_build_and_setting(monkeypatch, probes, tmp_path):
    import llama_cpp

    real_run = subprocess.run
    segfaulting_probe(monkeypatch)
    gguf = tmp_path / "model.gguf"
    gguf.write_bytes(b"GGUF")
    with pytest.raises(AboError) as crash:
        buffers.probe("gemma-3-270m", gguf, True)
    message = str(crash.value)
    assert "\n" not in message
    assert message.startswith("llama.cpp crashed (SIGSEGV) in native code running gemma-3-270m")
    assert "llama-cpp-python 0.3.36" in message and llama_cpp.llama_print_system_info().decode().split("|")[0].strip() in message
    assert "set LM_EVAL_ABO_EXTRA_BUFFERS=off" in message and "ggml-org/llama.cpp#20824" in message
    monkeypatch.setattr(buffers.subprocess, "run", lambda *a, **k: pytest.fail("the remembered answer was not used"))
    with pytest.raises(AboError, match="crashed \\(SIGSEGV\\)"):
        buffers.probe("gemma-3-270m", gguf, True)
    monkeypatch.setattr(buffers.subprocess, "run", real_run)
    segfaulting_probe(monkeypatch)
    with pytest.raises(AboError, match="extra buffer types were already off; reinstall llama-cpp-python"):
        buffers.probe("gemma-3-270m", gguf, False)


@pytest.mark.slow
def test_a_server_that_dies_of_a_signal_says_it_crashed(probes):
    import signal

    server = serve.start(DEFAULT_TARGET)
    try:
        server.process.send_signal(signal.SIGSEGV)
        server.process.wait(timeout=30)
        assert server.ended().startswith(f"llama.cpp crashed (SIGSEGV) in native code running {DEFAULT_TARGET}")
    finally:
        serve.stop(server)
