import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from lm_eval.api.model import LM

from lm_eval_abo.artifact import store
from lm_eval_abo.optimizers.base import Proposal
from lm_eval_abo.optimizers.instructions import InstructionMethod, initial_candidates
from lm_eval_abo.optimizers.result import TIMINGS

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

ROOT = Path(__file__).resolve().parent.parent
SHARED_BBH = ROOT.parent / "shared" / "data" / "bbh"


@pytest.fixture
def bbh_dir() -> Path:
    if not (SHARED_BBH / "navigate.json").exists():
        pytest.skip(f"real BIG-Bench-Hard files not found at {SHARED_BBH} (they exist only beside the project's CI)")
    return SHARED_BBH


@pytest.fixture(scope="session")
def gemma_server():
    """The embedded target behind an OpenAI-compatible server, as the stock lm_eval CLI reaches it."""
    from lm_eval_abo.embedded import serve

    with serve.running(["gemma-3-270m"]) as servers:
        yield servers[0]


@pytest.fixture(scope="module")
def embedded_target():
    """The embedded target loaded in this process, as `--model abo-embedded` loads it."""
    from lm_eval_abo.embedded import models
    from lm_eval_abo.embedded.backend import EmbeddedLM

    return EmbeddedLM(model=models.DEFAULT_TARGET)


def local_completions_args(server) -> str:
    return (
        f"model={server.model},base_url={server.base_url}/completions,"
        "tokenizer_backend=None,tokenized_requests=False,num_concurrent=1"
    )


def run_cli(*args: str, cwd: Path | None = None, check: bool = True, timeout: int = 900) -> subprocess.CompletedProcess:
    """Run a console command in a subprocess, as a user would."""
    proc = subprocess.run(
        list(args), cwd=cwd, capture_output=True, text=True, timeout=timeout, env={**os.environ, "PYTHONUNBUFFERED": "1"}
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"{args[0]} exited {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc


def bin_path(name: str) -> str:
    return str(Path(sys.executable).parent / name)


def results_file(output_dir: Path) -> dict:
    files = sorted(output_dir.rglob("results_*.json"))
    assert files, f"no results JSON under {output_dir}"
    return json.loads(files[-1].read_text())


def samples(output_dir: Path, task: str) -> list[dict]:
    files = sorted(output_dir.rglob(f"samples_{task}_*.jsonl"))
    assert files, f"no samples for {task} under {output_dir}"
    return samples_of(files[-1])


def samples_of(path: Path) -> list[dict]:
    assert path.is_file(), f"no samples log {path}"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def logged_values(results_path: Path, task: str, metric: str = "exact_match", filter_name: str = "answer") -> dict:
    """{document hash: the metric's value}, read straight from lm-eval's samples log beside a results file."""
    stem = results_path.stem.removeprefix("results_")
    rows = samples_of(results_path.parent / f"samples_{task}_{stem}.jsonl")
    return {row["doc_hash"]: float(row[metric]) for row in rows if row["filter"] == filter_name}


def paired_by_hand(baseline: dict, new: dict) -> tuple[float, tuple[float, float]]:
    """The difference of two prompts scored on the same 3 or fewer documents ({doc: value} each), and the 95%
    percentile bootstrap interval that follows by hand: every resample of n <= 3 pairs that repeats one pair n times
    has probability at least (1/n)^n >= 1/27 > 2.5%, so the 2.5% and 97.5% percentiles of the resampled mean are the
    smallest and largest per-document difference."""
    assert baseline.keys() == new.keys() and 0 < len(new) <= 3, "the same documents, at most 3"
    diffs = [new[d] - baseline[d] for d in sorted(new)]
    return sum(diffs) / len(diffs), (min(diffs), max(diffs))


class ScriptedLLM:
    """A stand-in optimizer for unit tests: `reply(messages)` decides each answer; every request is
    recorded. It offers what the methods use of OptimizerLLM: complete_many, usage and a call budget."""

    def __init__(self, reply, max_calls=None):
        from lm_eval_abo.infra.llm import Usage

        self.reply = reply
        self.requests: list[list[dict]] = []
        self.temperatures: list[float | None] = []
        self.usage = Usage()
        self.max_calls = max_calls

    def exhausted(self):
        if self.max_calls is not None and self.usage.calls >= self.max_calls:
            return f"optimizer call budget of {self.max_calls} reached"
        return None

    def complete_many(self, requests, desc="", temperature=None):
        from lm_eval_abo.infra.llm import BudgetExhausted

        out = []
        for messages, _seed in requests:
            if self.exhausted():
                raise BudgetExhausted(self.exhausted())
            self.requests.append(messages)
            self.temperatures.append(temperature)
            self.usage.calls += 1
            out.append(self.reply(messages))
        return out

    def prompts_sent(self, containing: str = "") -> list[str]:
        return [m[0]["content"] for m in self.requests if containing in m[0]["content"]]


class FakeLM(LM):
    """The one stand-in target of the unit tests: `answer(request)` writes each reply (`request.args[0]` is the
    prompt, `request.args[1]` its decoding settings, `request.doc` the document); every prompt and every
    decoding setting sent is kept (`seen`, `kwargs`)."""

    def __init__(self, answer):
        super().__init__()
        self.answer = answer
        self.seen: list[str] = []
        self.kwargs: list[dict] = []

    def generate_until(self, requests, disable_tqdm=False):
        out = []
        for r in requests:
            self.seen.append(r.args[0])
            self.kwargs.append(r.args[1])
            out.append(self.answer(r))
        return out

    def loglikelihood(self, requests, disable_tqdm=False):
        raise NotImplementedError

    def loglikelihood_rolling(self, requests, disable_tqdm=False):
        raise NotImplementedError


def gold(request) -> str:
    """The document's gold answer: its `target` or `answer`."""
    return request.doc.get("target", request.doc.get("answer"))


def rule_answer(keyword: str = "magic", say: str = ""):
    """Right exactly when the prompt contains `keyword` (every answer starting with `say`, if given)."""

    def answer(request) -> str:
        verdict = f" So the answer is {gold(request)}." if keyword in request.args[0] else " I do not know."
        return f" {say}{verdict}" if say else verdict

    return answer


def rule_lm(keyword: str = "magic", say: str = "") -> FakeLM:
    """A stand-in target for unit tests: answers right exactly when the prompt contains `keyword`."""
    return FakeLM(rule_answer(keyword, say))


def make_bridge(lm, task="abo_object_counting_synth", include_path=(), harness=None, **metadata):
    """The bridge a session opens over an already loaded target (all of every split, no limits)."""
    from lm_eval_abo.config import OptimizeConfig
    from lm_eval_abo.cost.target import CountingLM
    from lm_eval_abo.run.session import plan_session

    config = OptimizeConfig(task=task, include_path=list(include_path), metadata={"abo_n_test": 5, **metadata},
                            **(harness or {}))
    bridge = plan_session(config).bridge
    bridge.attach(CountingLM(lm))
    return bridge


def make_context(bridge, llm, method: str | None = None, seed: int = 1, train_pool=range(8), dev_indices=(),
                 sampling_temperature: float | None = None, **params):
    """The context a run gives `method` (its default parameters, `params` over them), over a test's bridge and
    optimizer."""
    from dataclasses import replace

    from lm_eval_abo.optimizers import METHODS
    from lm_eval_abo.optimizers.base import Context, OptimizerCalls

    chosen = replace(METHODS[method].params, **params) if method else None
    return Context(task=bridge, calls=OptimizerCalls(llm, seed, sampling_temperature), params=chosen, seed=seed,
                   train_pool=list(train_pool), dev_indices=list(dev_indices))


def make_search(method, ctx, beam: int = 2, minibatch: int = 4, rounds: int = 1, patience: int | None = None,
                racing: bool = False, paired: bool = False, alpha: float = 0.05, no_copy: bool = True):
    """The search loop as a run builds it (`method`: a name or a method object), over the context's bridge."""
    from lm_eval_abo.cost.ledger import Ledger
    from lm_eval_abo.optimizers import METHODS, selection
    from lm_eval_abo.optimizers.search import Search
    from lm_eval_abo.optimizers.stopping import AnyOf, MaxRounds, Patience

    return Search(METHODS[method] if isinstance(method, str) else method, ctx, bridge=ctx.task,
                  ledger=Ledger(ctx.calls.llm.usage, ctx.task.counter.usage), beam=beam, minibatch=minibatch,
                  stop=AnyOf((Patience(patience), MaxRounds(rounds))),
                  dev_scoring=selection.Racing(seed=ctx.seed) if racing else selection.FullDev(),
                  acceptance=selection.Paired(alpha) if paired else selection.ByScore(), alpha=alpha, no_copy=no_copy)


def projected_rounds(method: str, n_train: int, n_dev: int, n_test: int = 2, **settings) -> list[dict]:
    """The projection's optimizer calls and target requests per round, for a run of `method` on the
    synthetic task with these split sizes (a fake local-completions target: nothing loads)."""
    from lm_eval_abo.config import OptimizeConfig
    from lm_eval_abo.run.projection import project
    from lm_eval_abo.run.session import plan_session, prices_of, resolve_run

    config, chosen, params = resolve_run(OptimizeConfig(
        task="abo_object_counting_synth", method=method, model="local-completions",
        model_args="model=fake,tokenizer_backend=None", train_limit=n_train, dev_limit=n_dev, test_limit=n_test,
        metadata={"abo_n_train": n_train, "abo_n_dev": n_dev, "abo_n_test": n_test}, **settings))
    plan = project(plan_session(config), chosen, params, prices_of(config), config.optimizer, None)
    return [{"optimizer_calls": r.optimizer.calls, "target_requests": r.target.calls} for r in plan.rounds]


@pytest.fixture(scope="session")
def real_results(tmp_path_factory) -> dict[str, Path]:
    """Two real lm-eval results directories from the embedded target (tiny sizes): "baseline", the
    default prompts of two tasks through `lm-eval-abo run`; "ape", an `optimize` run on one of them
    (its results beside its artifact, as optimize writes them)."""
    root = tmp_path_factory.mktemp("real_results")
    run_cli(bin_path("lm-eval-abo"), "run", "--model", "abo-embedded", "--tasks", "abo_object_counting_synth,abo_navigate_synth",
            "--limit", "3", "--gen_kwargs", "max_gen_toks=48", "--output_path", str(root / "baseline"), cwd=root)
    run_cli(bin_path("lm-eval-abo"), "optimize", "--task", "abo_object_counting_synth", "--method", "ape", "--rounds", "1",
            "--beam", "1", "--train-limit", "4", "--dev-limit", "3", "--test-limit", "3", "--minibatch", "2",
            "--gen_kwargs", "max_gen_toks=48", "--method-args", "paraphrases=1", "--output", "runs",
            "--optimizer-cache", str(root / "optimizer-cache"), cwd=root)
    return {"root": root, "baseline": root / "baseline", "ape": root / "runs"}


def write_user_task(folder: Path, name: str = "my_arith", splits=("train", "validation", "test"), sizes=(12, 8, 10),
                    **overrides) -> Path:
    """A plain lm-eval task of a user's own: JSONL data files, generate_until, a regex filter, exact_match;
    nothing of lm-eval-abo in it. Returns the directory to give as --include_path."""
    import random

    import yaml

    folder.mkdir(parents=True, exist_ok=True)
    rng = random.Random(name)
    files = {}
    for split, size in zip(splits, sizes):
        rows = []
        for _ in range(size):
            a, b = rng.randint(1, 20), rng.randint(1, 20)
            rows.append({"question": f"What is {a} plus {b}?", "answer": str(a + b)})
        path = folder / f"{name}_{split}.jsonl"
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
        files[split] = str(path)
    config = {
        "task": name, "dataset_path": "json", "dataset_kwargs": {"data_files": files}, "output_type": "generate_until",
        **{f"{'training' if split == 'train' else split}_split": split for split in splits},
        "description": "Add the two numbers.\n\n", "doc_to_text": "Question: {{question}}\nAnswer:",
        "doc_to_target": "{{answer}}",
        "generation_kwargs": {"until": ["\n\nQuestion:"], "max_gen_toks": 32, "do_sample": False},
        "filter_list": [{"name": "get-answer", "filter": [{"function": "regex", "regex_pattern": "answer is (\\-?[0-9]+)"},
                                                          {"function": "take_first"}]}],
        "metric_list": [{"metric": "exact_match", "aggregation": "mean", "higher_is_better": True}],
        **overrides,
    }
    (folder / f"{name}.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    return folder


def write_multiple_choice_task(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    colours = [("grass", "green"), ("the sky", "blue"), ("snow", "white"), ("coal", "black"), ("blood", "red"),
               ("a banana", "yellow"), ("an orange", "orange"), ("chocolate", "brown")]
    options = ["green", "blue", "white", "black", "red", "yellow", "orange", "brown"]
    rows = [{"thing": thing, "choices": options, "label": options.index(colour)} for thing, colour in colours * 2]
    (folder / "choice.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (folder / "my_choice.yaml").write_text(yaml.safe_dump({
        "task": "my_choice", "dataset_path": "json", "dataset_kwargs": {"data_files": {"test": str(folder / "choice.jsonl")}},
        "output_type": "multiple_choice", "test_split": "test", "doc_to_text": "What colour is {{thing}}? Answer:",
        "doc_to_choice": "{{choices}}", "doc_to_target": "label",
        "metric_list": [{"metric": "acc", "aggregation": "mean", "higher_is_better": True}],
    }))
    return folder


def write_results(path, scores: dict, n: int = 100, date: float = 1.0, lower_is_better=()):
    """A results file with the keys lm-eval writes that the gate reads: {task: (value, stderr)}."""
    data = {
        "results": {t: {"alias": t, "exact_match,answer": v, "exact_match_stderr,answer": "N/A" if se is None else se}
                    for t, (v, se) in scores.items()},
        "higher_is_better": {t: {"exact_match": t not in lower_is_better} for t in scores},
        "n-samples": {t: {"original": n, "effective": n} for t in scores},
        "config": {"model": "local-completions", "model_args": "model=m"}, "model_name": "m", "date": date,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))
    return path


def write_samples(results_path, task: str, values: list[float]):
    """lm-eval's per-sample log beside a results file: one row per document, as --log_samples writes it."""
    stem = results_path.stem.removeprefix("results_")
    rows = [{"doc_id": i, "doc_hash": f"h{i}", "filter": "answer", "exact_match": v} for i, v in enumerate(values)]
    results_path.with_name(f"samples_{task}_{stem}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


def comparable(artifact: store.Artifact) -> dict:
    """An artifact without what legitimately differs between runs (times, cache hits, dates)."""
    trace = [{k: v for k, v in r.items() if k not in (*TIMINGS, "optimizer", "target")} for r in artifact.trace]
    scores = {k: {kk: vv for kk, vv in v.items() if kk != "results_file"} for k, v in artifact.scores.items()}
    return {"prompt": artifact.prompt.to_dict(), "scores": scores, "splits": artifact.splits, "trace": trace}


def plain_or_magic(messages):
    """Initial instructions: every third one says the magic word (the target then gets everything right)."""
    plain_or_magic.n = getattr(plain_or_magic, "n", 0) + 1
    return f"<prompt>Say the magic word, take {plain_or_magic.n}.</prompt>" if plain_or_magic.n % 3 == 0 else \
        f"<prompt>Count the items, take {plain_or_magic.n}.</prompt>"


class Initial(InstructionMethod):
    """Round 0 only: `count` LLM-written initial instructions, whatever the beam."""

    name = "initial"

    def __init__(self, count: int):
        self.count = count

    def initial(self, ctx, beam):
        return Proposal(initial_candidates(ctx, self.count))


def search(count: int, beam: int, dev: int, **rules):
    plain_or_magic.n = 0
    bridge = make_bridge(rule_lm(), abo_n_train=8, abo_n_dev=dev)
    ctx = make_context(bridge, ScriptedLLM(plain_or_magic), dev_indices=range(dev))
    state = make_search(Initial(count), ctx, beam=beam, rounds=0, **rules).run(None, lambda s, r: None, lambda r: None)
    return state, bridge.target_requests
