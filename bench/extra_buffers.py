"""llama.cpp's extra buffer types on and off: prompt and generation speed of each embedded model.

Each measurement is a fresh child process that loads the model with `use_extra_bufts` on or off (as
`lm_eval_abo.embedded.buffers.loading` sets it), evaluates a prompt of about 400 tokens, then generates
64 tokens greedily; the speeds are llama.cpp's own timings (`llama_perf_context`). On and off alternate
(on, off, off, on, ...), and each figure is the median over `--repeats`. Also timed: the test run
`buffers.probe` makes before a process first loads a model (a child process that loads it and decodes a
few tokens). The ratios feed the rule in `buffers.py`'s docstring. Run it on an idle machine.

    python bench/extra_buffers.py [--models gemma-3-270m,qwen2.5-coder-0.5b] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

import record

CHILD = r"""
import json, sys, llama_cpp
from lm_eval_abo.embedded.buffers import loading
from lm_eval_abo.embedded.models import N_THREADS, model_path
name, extra = sys.argv[1], sys.argv[2] == "on"
with loading(extra):
    llm = llama_cpp.Llama(model_path=str(model_path(name)), n_ctx=2048, n_threads=N_THREADS, verbose=False)
prompt = " ".join(f"Item {i}: a red apple, two blue pens and {i % 7} green leaves." for i in range(30))
llm.create_completion(prompt, max_tokens=64, temperature=0.0, stop=[])
perf = llama_cpp.llama_perf_context(llm.ctx)
print(json.dumps({"prompt_tokens": perf.n_p_eval, "prompt_tok_s": 1000 * perf.n_p_eval / perf.t_p_eval_ms,
                  "gen_tokens": perf.n_eval, "gen_tok_s": 1000 * perf.n_eval / perf.t_eval_ms}))
llm.close()
"""


def measure(name: str, extra: str) -> dict:
    out = subprocess.run([sys.executable, "-c", CHILD, name, extra], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def probe_seconds(name: str) -> float:
    """The test run's wall time: a child that loads the model and decodes a few tokens."""
    from lm_eval_abo.embedded.buffers import use_extra_buffers
    from lm_eval_abo.embedded.models import model_path

    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "lm_eval_abo.embedded.probe", str(model_path(name)),
                    "on" if use_extra_buffers() else "off"], check=True, capture_output=True)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="gemma-3-270m,qwen2.5-coder-0.5b")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    load = record.header("llama.cpp's extra buffer types on and off")
    import llama_cpp

    print(f"llama.cpp: {llama_cpp.llama_print_system_info().decode().strip()}\n")
    rows = []
    for name in args.models.split(","):
        runs: dict[str, list[dict]] = {"on": [], "off": []}
        for i in range(args.repeats):
            for extra in (("on", "off") if i % 2 == 0 else ("off", "on")):
                runs[extra].append(measure(name, extra))
        for extra in ("on", "off"):
            rows.append({"model": name, "extra buffers": extra,
                         "prompt tokens": runs[extra][0]["prompt_tokens"],
                         "prompt tok/s": record.median(r["prompt_tok_s"] for r in runs[extra]),
                         "generation tok/s": record.median(r["gen_tok_s"] for r in runs[extra])})
        on, off = rows[-2], rows[-1]
        off["prompt off/on"] = off["prompt tok/s"] / on["prompt tok/s"]
        off["generation off/on"] = off["generation tok/s"] / on["generation tok/s"]
        off["probe s"] = on["probe s"] = probe_seconds(name)
    print(record.table(rows, ["model", "extra buffers", "prompt tokens", "prompt tok/s", "generation tok/s",
                              "prompt off/on", "generation off/on", "probe s"]))
    record.save("extra_buffers", {"load_average_1min_at_start": load, "rows": rows,
                                  "system_info": llama_cpp.llama_print_system_info().decode().strip()})


if __name__ == "__main__":
    main()
