"""Harness overhead: an abo task with an artifact versus the same prompt as a plain lm-eval YAML task.

Both run through `lm_eval.simple_evaluate` with the same in-process embedded target, on the same test
examples, with byte-identical prompts (checked through every sample's `arguments`). The abo path is the
one `lm_eval --metadata '{"abo_prompt": ARTIFACT}'` takes: the AboTask class reads the artifact and adds the
prompt's parts to the documents. The plain path is what a user would write by hand: a YAML task with the
description, few-shot samples and answer prefix as literals, and the same documents from jsonl files.
Full runs alternate (ABBA) and the median of the per-pair ratios is reported; the task build (index,
TaskManager.load, request building) is timed apart so the ratio can be explained.

    python bench/harness_overhead.py                  # 30 test examples, 2 ABBA blocks
    python bench/harness_overhead.py --limit 3 --blocks 1
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import yaml

import record

PLAIN_TASK = "plain_object_counting"
PROCEDURE = (
    "Write down every object named in the question, one per line, with how many there are.",
    "Cross out every object that is not of the kind the question asks about.",
    "Add up the numbers of the objects that are left.",
    "Write the total.",
)


def behaviour_prompt(train_docs: list[dict]):
    """An ABO-shaped prompt: a procedure, three worked demonstrations and the "Step 1:" answer prefix."""
    from lm_eval_abo.optimizers.abo import INSTRUCTION
    from lm_eval_abo.prompt import Demonstration, Prompt

    demos = tuple(
        Demonstration(doc=doc, output=(
            "I list the objects.\nStep 2: I keep those of the asked kind.\nStep 3: I add their numbers.\n"
            f"Step 4: So the answer is {doc['target']}."
        ))
        for doc in train_docs[:3]
    )
    return Prompt(instruction=INSTRUCTION, procedure=PROCEDURE, answer_format='End your answer with "So the answer is N." where N is a number.',
                  demonstrations=demos, answer_prefix="Step 1:")


def write_inputs(directory: Path) -> tuple[Path, Path]:
    """The artifact for the abo path, and the plain task (YAML + jsonl of the same documents)."""
    from lm_eval.tasks import TaskManager
    from lm_eval.tasks._yaml_loader import load_yaml

    from lm_eval_abo import store
    from lm_eval_abo.prompt import DEMO_OUTPUT, demo_rows
    from lm_eval_abo.tasks import tasks_dir

    manager = TaskManager(include_path=str(tasks_dir()), include_defaults=False)
    task = manager.load([record.TASK])["tasks"][record.TASK]
    plain_dir = directory / "plain"
    plain_dir.mkdir()
    files = {}
    for split in ("train", "dev", "test"):
        files[split] = str(plain_dir / f"{split}.jsonl")
        rows = [{k: v for k, v in doc.items() if not k.startswith("abo_")} for doc in task.dataset[split]]
        Path(files[split]).write_text("".join(json.dumps(r) + "\n" for r in rows))
    prompt = behaviour_prompt([dict(d) for d in task.dataset["train"]])
    artifact = store.save(store.Artifact(task=record.TASK, method="bench", prompt=prompt), directory / "best.yaml")

    fields = prompt.doc_fields()
    base = load_yaml(manager.task_index[record.TASK].yaml_path, resolve_func=True)
    plain = {
        "task": PLAIN_TASK, "output_type": "generate_until",
        "dataset_path": "json", "dataset_kwargs": {"data_files": files},
        "training_split": "train", "validation_split": "dev", "test_split": "test",
        "description": fields["abo_system"], "doc_to_text": fields["abo_user"] + "Q: {{input}}\nA:", "doc_to_target": "target",
        "gen_prefix": fields["abo_answer_prefix"], "target_delimiter": " ", "fewshot_delimiter": "\n\n",
        "num_fewshot": len(prompt.demonstrations),
        "fewshot_config": {"sampler": "first_n", "samples": [{"input": r["input"], "answer": r[DEMO_OUTPUT]} for r in demo_rows(prompt)],
                           "doc_to_text": "Q: {{input}}\nA:", "doc_to_target": "{{answer}}"},
        "generation_kwargs": base["generation_kwargs"], "filter_list": base["filter_list"], "metric_list": base["metric_list"],
        "metadata": {"version": 1.0},
    }
    (plain_dir / f"{PLAIN_TASK}.yaml").write_text(yaml.safe_dump(plain, sort_keys=False, allow_unicode=True))
    return artifact, plain_dir


def manager_for(path: str, artifact: Path, plain_dir: Path):
    from lm_eval.tasks import TaskManager

    from lm_eval_abo.tasks import tasks_dir

    if path == "abo":
        return TaskManager(include_path=str(tasks_dir()), include_defaults=False, metadata={"abo_prompt": str(artifact)}), record.TASK
    return TaskManager(include_path=str(plain_dir), include_defaults=False), PLAIN_TASK


def timed_target(model: str):
    """The embedded target, timing its own generation (what is left of a run is harness)."""
    from lm_eval_abo.embedded import EmbeddedLM

    class Timed(EmbeddedLM):
        seconds = 0.0

        def generate_until(self, requests, disable_tqdm: bool = False):
            with record.stopwatch() as elapsed:
                out = super().generate_until(requests, disable_tqdm=True)
            self.seconds += elapsed()
            return out

    return Timed(model=model)


def full_run(lm, path: str, artifact: Path, plain_dir: Path, limit: int) -> dict:
    """One whole evaluation, as `lm_eval` runs it: index, tasks, requests, model, filters, metrics."""
    from lm_eval import simple_evaluate

    model_before = lm.seconds
    with record.stopwatch() as elapsed:
        manager, name = manager_for(path, artifact, plain_dir)
        results = simple_evaluate(model=lm, tasks=[name], task_manager=manager, limit=limit, log_samples=True, bootstrap_iters=0)
    rows = sorted(results["samples"][name], key=lambda r: r["doc_id"])
    return {
        "wall_s": elapsed(), "model_s": lm.seconds - model_before,
        "prompts": [(r["arguments"][0][0], json.dumps(r["arguments"][0][1], sort_keys=True)) for r in rows],
        "responses": [r["resps"][0][0] for r in rows],
        "score": results["results"][name]["exact_match,answer"],
    }


def task_build(lm, path: str, artifact: Path, plain_dir: Path, limit: int) -> float:
    """Seconds to index the tasks, build the task object and all its requests (no model calls)."""
    with record.stopwatch() as elapsed:
        manager, name = manager_for(path, artifact, plain_dir)
        task = manager.load([name])["tasks"][name]
        task.set_fewshot_seed(1234)
        task.build_all_requests(limit=limit, tokenizer_name=lm.tokenizer_name)
    return elapsed()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--limit", type=int, default=30, help="test examples (the small preset's test size)")
    parser.add_argument("--blocks", type=int, default=2, help="ABBA blocks of full runs (each: abo, plain, plain, abo)")
    parser.add_argument("--builds", type=int, default=7, help="task builds timed per path")
    parser.add_argument("--model", default="gemma-3-270m")
    args = parser.parse_args()
    load_at_start = record.header("Harness overhead: abo task + artifact vs plain lm-eval YAML task")

    from lm_eval_abo.scoring import quiet_lm_eval

    lm = timed_target(args.model)
    with tempfile.TemporaryDirectory() as tmp, quiet_lm_eval():
        artifact, plain_dir = write_inputs(Path(tmp))
        from lm_eval_abo import data

        data._synthetic_splits.cache_clear()  # the first abo build generates its data, as a fresh `lm_eval` process does
        builds = {path: [task_build(lm, path, artifact, plain_dir, args.limit) for _ in range(args.builds)] for path in ("abo", "plain")}
        runs: dict[str, list[dict]] = {"abo": [], "plain": []}
        loads = []
        for _ in range(args.blocks):
            for path in ("abo", "plain", "plain", "abo"):
                runs[path].append(full_run(lm, path, artifact, plain_dir, args.limit))
                loads.append(record.load_average())

    first_abo, first_plain = runs["abo"][0], runs["plain"][0]
    identical = first_abo["prompts"] == first_plain["prompts"]
    same_answers = first_abo["responses"] == first_plain["responses"]
    ratios = [a["wall_s"] / p["wall_s"] for a, p in zip(runs["abo"], runs["plain"])]
    rows = []
    for path in ("abo", "plain"):
        walls = [r["wall_s"] for r in runs[path]]
        models = [r["model_s"] for r in runs[path]]
        rows.append({"path": path, "median wall s": record.median(walls), "median model s": record.median(models),
                     "median harness s": record.median([w - m for w, m in zip(walls, models)]),
                     "task build s (first)": builds[path][0], "task build s (median)": record.median(builds[path]),
                     "exact_match": runs[path][0]["score"]})
    print(f"{args.limit} test examples; prompts byte-identical: {identical} ({len(first_abo['prompts'])} requests); "
          f"responses identical: {same_answers}\n")
    print(record.table(rows))
    median_ratio = record.median(ratios)
    print(f"\nfull-run ratio abo / plain: median {median_ratio:.3f} over {len(ratios)} pairs of runs "
          f"({', '.join(f'{r:.3f}' for r in ratios)}); goal <= 1.05")
    print(f"task-build difference (median): {1000 * (rows[0]['task build s (median)'] - rows[1]['task build s (median)']):+.0f} ms per run")
    print(f"load average during the runs: {min(loads)}-{max(loads)}")
    record.save("harness_overhead", {
        "limit": args.limit, "blocks": args.blocks, "load_average_1min_at_start": load_at_start, "load_averages": loads,
        "prompts_identical": identical, "responses_identical": same_answers, "ratios": ratios, "median_ratio": median_ratio,
        "rows": rows, "task_builds_s": builds,
        "runs": {p: [{k: v for k, v in r.items() if k not in ("prompts", "responses")} for r in rs] for p, rs in runs.items()},
    })


if __name__ == "__main__":
    main()
