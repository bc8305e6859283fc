"""The Ray executor: each cell a Ray task that declares what it holds (one CPU; a whole node's CPUs where
an embedded llama.cpp model runs in the cell; the GPUs of a local `hf` or `vllm` target), on the cluster
at `--ray-address` or on a local Ray started for the grid.

- Before the first call, a file the driver writes in the output directory is read back by a task on every
  node: an output directory that a node cannot see is refused in one line.
- A cell whose node dies is retried by Ray (`max_retries`) on another node, where it continues from its
  last finished round (each cell runs with `--resume`; the grid checked before that no earlier run is
  there unless the grid itself was resumed).
- A cell's lines go to `<output>/grid-logs/<cell>.log`, one attempt after another.
"""

from __future__ import annotations

import os
import socket
import uuid
from pathlib import Path

from lm_eval_abo.infra.errors import AboError
from lm_eval_abo.infra.files import append_line, write_text_atomic
from lm_eval_abo.infra.flags import parse_pairs
from lm_eval_abo.run.grid.cells import FAILED, report_of, run_cell

EXTRA = 'pip install "lm-eval-abo[ray]"'
RETRIES = 3  # attempts after the first, for a cell whose worker or node died (not for its own errors)
OFFLINE = ("LITELLM_LOCAL_MODEL_COST_MAP", "HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")


def _ray():
    try:
        import ray
    except ImportError:
        raise AboError(f"--executor ray needs Ray, which is not installed: {EXTRA}") from None
    return ray


def resources(config, node_cpus: int) -> dict:
    """What a cell's Ray task declares: a local `hf` or `vllm` target's GPUs; all of a node's CPUs where an
    embedded model computes in the cell (two llama.cpp models on the same cores slow each other many
    times over); else one CPU (a served target waits on the network)."""
    args = parse_pairs(config.model_args, "--model_args")
    gpus = 0
    if config.model == "vllm":
        gpus = int(args.get("tensor_parallel_size", 1)) * int(args.get("data_parallel_size", 1))
    elif config.model == "hf" and not str(config.device or args.get("device", "cuda")).startswith("cpu"):
        gpus = 1
    embedded = config.model == "abo-embedded" or config.optimizer.startswith("embedded/")
    return {"num_cpus": node_cpus if embedded else 1, "num_gpus": gpus}


def _read(path: str) -> tuple[str, str]:
    """On a node: the probe file's text (empty when the node cannot read it), and the node's host name."""
    try:
        return Path(path).read_text(), socket.gethostname()
    except OSError:
        return "", socket.gethostname()


def _cell(cell):
    """A cell as a Ray task: an attempt's first line names its node."""
    import ray

    node = ray.get_runtime_context().get_node_id()[:12]
    append_line(cell.log, f"attempt on {socket.gethostname()} (Ray node {node}, process {os.getpid()})")
    return run_cell(cell)


class OnRay:
    name = "ray"

    def __init__(self, address: str | None = None):
        self.ray, self.address, self.started = _ray(), address, False

    def __enter__(self) -> OnRay:
        ray = self.ray
        if not ray.is_initialized():
            env = {name: os.environ[name] for name in OFFLINE if name in os.environ}
            try:
                ray.init(address=self.address or "local", log_to_driver=False, logging_level="ERROR",
                         runtime_env={"env_vars": env} if env else None)
            except (ConnectionError, ValueError, RuntimeError) as e:
                lines = str(e).strip().splitlines() or [type(e).__name__]
                raise AboError(f"--ray-address {self.address}: cannot connect to Ray ({lines[0]})") from None
            self.started = True
        return self

    def __exit__(self, *exc) -> None:
        if self.started:
            self.ray.shutdown()

    def nodes(self) -> list[dict]:
        return [n for n in self.ray.nodes() if n.get("Alive")]

    def check_output(self, output: Path) -> None:
        """Refuse, in one line, an output directory that some node cannot see."""
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        ray, nodes = self.ray, self.nodes()
        token = uuid.uuid4().hex
        probe = write_text_atomic(Path(output) / f".grid-probe-{token[:12]}", token)
        read = ray.remote(num_cpus=0, max_retries=0)(_read)
        try:
            seen = ray.get([read.options(scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False))
                            .remote(str(probe)) for n in nodes], timeout=300)
        except ray.exceptions.RayError as e:
            raise AboError(f"cannot check that every Ray node sees {output}: {_line(e)}") from None
        finally:
            probe.unlink(missing_ok=True)
        blind = [f"{host} ({node['NodeManagerAddress']}, node {node['NodeID'][:12]})"
                 for node, (text, host) in zip(nodes, seen) if text != token]
        if blind:
            raise AboError(f"--output {output} is not visible from {len(blind)} of {len(nodes)} Ray nodes "
                           f"({', '.join(blind)}): the output directory must be storage every node sees at the "
                           "same path")

    def run(self, cells, done, lm=None, out=print) -> None:
        """Every cell as a Ray task; `done(report)` as each ends, in the order they end. `lm` stays here: each
        task loads its own target."""
        ray = self.ray
        most = max(int(n["Resources"].get("CPU", 1)) for n in self.nodes())
        task = ray.remote(_cell)
        running = {task.options(**resources(cell.config, most), max_retries=RETRIES, retry_exceptions=False,
                                name=f"cell {cell.name}").remote(cell): cell for cell in cells}
        pending = list(running)
        while pending:
            ready, pending = ray.wait(pending, num_returns=1, timeout=1.0)  # a timeout lets Ctrl-C through
            if not ready:
                continue
            cell = running[ready[0]]
            try:
                report = ray.get(ready[0])
            except ray.exceptions.RayError as e:  # its node died more often than it may be retried
                report = report_of(cell, FAILED, f"Ray gave up on it: {_line(e)}")
            done(report)


def _line(error: Exception) -> str:
    lines = str(error).strip().splitlines() or [""]
    return f"{type(error).__name__}: {lines[0]}"
