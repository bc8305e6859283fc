"""Harness overhead: a prompt evaluated the plugin's ways versus written into a plain lm-eval YAML by hand.

Two tasks, the same embedded target, the same test examples, through `lm_eval.simple_evaluate`:
  * the abo task `abo_object_counting_synth` with an artifact (`--metadata abo_prompt=...`: the AboTask
    class reads it and writes the prompt into the task's fields) against a plain YAML with the prompt's
    description, few-shot samples and answer prefix written in as literals, over the same documents;
  * a user's plain task (a YAML of jsonl files, nothing of the plugin) run three ways: the prompt written
    in by hand (plain); the task's own config with the prompt put in by `tasks.fields` (what the search
    scores and the final evaluation runs: "in-run"); and the plain lm-eval task a run exports ("export").
The prompts must be byte-identical (checked through every sample's `arguments`). Full runs alternate in
mirrored blocks and the median of the per-block ratios against the plain run is reported; the task build
(index, TaskManager.load, request building) is timed apart so a ratio can be explained.

    python bench/harness_overhead.py                  # 30 test examples, 2 blocks
    python bench/harness_overhead.py --limit 3 --blocks 1
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import record
import yaml

PLAIN_TASK = "plain_object_counting"
USER_TASK = "user_object_counting"
PROCEDURE = (
    "Write down every object named in the question, one per line, with how many there are.",
    "Cross out every object that is not of the kind the question asks about.",
    "Add up the numbers of the objects that are left.",
    "Write the total.",
)


def behaviour_prompt(train_docs: list[dict]):
    """An ABO-shaped prompt: a procedure, three worked demonstrations and the "Step 1:" answer prefix."""
    from lm_eval_abo.artifact.prompt import Demonstration, Prompt
    from lm_eval_abo.optimizers.abo import INSTRUCTION

    demos = tuple(
        Demonstration(doc=doc, output=(
            "I list the objects.\nStep 2: I keep those of the asked kind.\nStep 3: I add their numbers.\n"
            f"Step 4: So the answer is {doc['target']}."
        ))
        for doc in train_docs[:3]
    )
    return Prompt(instruction=INSTRUCTION, procedure=PROCEDURE, answer_format='End your answer with "So the answer is N." where N is a number.',
                  demonstrations=demos, answer_prefix="Step 1:")


def by_hand(prompt, name: str, data_files: dict, base: dict) -> dict:
    """The prompt written into a plain lm-eval YAML as a user would, literals and all."""
    return {
        "task": name, "output_type": "generate_until", "dataset_path": "json", "dataset_kwargs": {"data_files": data_files},
        "training_split": "train", "validation_split": "dev", "test_split": "test",
        "description": prompt.instruction_block() + "\n\n", "doc_to_text": "Q: {{input}}\nA:", "doc_to_target": "target",
        "gen_prefix": prompt.answer_prefix, "target_delimiter": " ", "fewshot_delimiter": "\n\n",
        "num_fewshot": len(prompt.demonstrations),
        "fewshot_config": {"sampler": "first_n", "doc_to_target": "{{worked}}", "samples": [
            {"input": d.doc["input"], "worked": d.output.removeprefix(prompt.answer_prefix).strip()} for d in prompt.demonstrations]},
        "generation_kwargs": base["generation_kwargs"], "filter_list": base["filter_list"], "metric_list": base["metric_list"],
        "metadata": {"version": 1.0},
    }


def write_inputs(directory: Path, limit: int) -> dict:
    """The artifact, the hand-written YAMLs, the user's task and its export; how each path is loaded."""
    from lm_eval.tasks import TaskManager

    from lm_eval_abo.artifact import store
    from lm_eval_abo.config import OptimizeConfig
    from lm_eval_abo.run.session import plan_session
    from lm_eval_abo.tasks import export, fields, tasks_dir
    from lm_eval_abo.tasks.configs import load_config

    manager = TaskManager(include_path=str(tasks_dir()), include_defaults=False)
    task = manager.load([record.TASK])["tasks"][record.TASK]
    base = load_config(manager.task_index[record.TASK].yaml_path)
    files = {}
    for split in ("train", "dev", "test"):
        files[split] = str(directory / f"{split}.jsonl")
        Path(files[split]).write_text("".join(json.dumps(dict(r)) + "\n" for r in task.dataset[split]))
    prompt = behaviour_prompt([dict(d) for d in task.dataset["train"]])
    artifact = store.save(store.Artifact(task=record.TASK, method="bench", prompt=prompt), directory / "best.yaml")
    for folder, name in (("plain", PLAIN_TASK), ("user", USER_TASK)):
        (directory / folder).mkdir()
        config = by_hand(prompt, name, files, base)
        if folder == "user":  # the task as its author wrote it, before any prompt
            config = {k: v for k, v in config.items() if k not in ("description", "gen_prefix", "num_fewshot", "fewshot_config")}
        (directory / folder / f"{name}.yaml").write_text(yaml.safe_dump(config, sort_keys=False, allow_unicode=True))

    user = TaskManager(include_path=str(directory / "user"), include_defaults=False)
    session = plan_session(OptimizeConfig(task=USER_TASK, include_path=[str(directory / "user")], test_limit=limit).resolved())
    export.write(session, prompt, directory / "export", "user_object_counting_abo", {"task": USER_TASK})
    in_run = fields.task_config(load_config(user.task_index[USER_TASK].yaml_path), prompt, USER_TASK)
    return {
        "abo": (lambda: TaskManager(include_path=str(tasks_dir()), include_defaults=False,
                                    metadata={"abo_prompt": str(artifact)}), record.TASK),
        "plain": (lambda: TaskManager(include_path=str(directory / "plain"), include_defaults=False), PLAIN_TASK),
        "in-run": (lambda: TaskManager(include_path=str(directory / "user"), include_defaults=False), in_run),
        "export": (lambda: TaskManager(include_path=str(directory / "export"), include_defaults=False), "user_object_counting_abo"),
    }


def timed_target(model: str):
    """The embedded target, timing its own generation (what is left of a run is harness)."""
    from lm_eval_abo.embedded.backend import EmbeddedLM

    class Timed(EmbeddedLM):
        seconds = 0.0

        def generate_until(self, requests, disable_tqdm: bool = False):
            with record.stopwatch() as elapsed:
                out = super().generate_until(requests, disable_tqdm=True)
            self.seconds += elapsed()
            return out

    return Timed(model=model)


def full_run(lm, paths: dict, path: str, limit: int) -> dict:
    """One whole evaluation, as `lm_eval` runs it: index, tasks, requests, model, filters, metrics."""
    from lm_eval import simple_evaluate

    model_before = lm.seconds
    with record.stopwatch() as elapsed:
        make_manager, task = paths[path]
        results = simple_evaluate(model=lm, tasks=[task], task_manager=make_manager(), limit=limit, log_samples=True,
                                  bootstrap_iters=0)
    name = next(iter(results["results"]))
    rows = sorted(results["samples"][name], key=lambda r: r["doc_id"])
    return {
        "wall_s": elapsed(), "model_s": lm.seconds - model_before,
        "prompts": [(r["arguments"][0][0], json.dumps(r["arguments"][0][1], sort_keys=True)) for r in rows],
        "responses": [r["resps"][0][0] for r in rows],
        "score": results["results"][name]["exact_match,answer"],
    }


def task_build(lm, paths: dict, path: str, limit: int) -> float:
    """Seconds to index the tasks, build the task object and all its requests (no model calls)."""
    with record.stopwatch() as elapsed:
        make_manager, spec = paths[path]
        task = next(iter(make_manager().load([spec])["tasks"].values()))
        task.set_fewshot_seed(1234)
        task.build_all_requests(limit=limit, tokenizer_name=lm.tokenizer_name)
    return elapsed()


COMPARISONS = {"abo task": ("abo", "plain"), "user task, in-run": ("in-run", "plain"), "user task, export": ("export", "plain")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--limit", type=int, default=30, help="test examples (the small preset's test size)")
    parser.add_argument("--blocks", type=int, default=2, help="mirrored blocks of full runs (each: every path, then back)")
    parser.add_argument("--builds", type=int, default=7, help="task builds timed per path")
    parser.add_argument("--model", default="gemma-3-270m")
    args = parser.parse_args()
    load_at_start = record.header("Harness overhead: the plugin's ways of running a prompt vs a plain lm-eval YAML task")

    from lm_eval_abo.tasks.built import quiet_lm_eval

    lm = timed_target(args.model)
    order = ["plain", "abo", "in-run", "export"]
    with tempfile.TemporaryDirectory() as tmp, quiet_lm_eval():
        paths = write_inputs(Path(tmp), args.limit)
        from lm_eval_abo.tasks import datasets

        datasets._synthetic_splits.cache_clear()  # the first abo build generates its data, as a fresh `lm_eval` process does
        builds = {path: [task_build(lm, paths, path, args.limit) for _ in range(args.builds)] for path in order}
        runs: dict[str, list[dict]] = {path: [] for path in order}
        loads = []
        for _ in range(args.blocks):
            for path in order + order[::-1]:
                runs[path].append(full_run(lm, paths, path, args.limit))
                loads.append(record.load_average())

    identical = {path: runs[path][0]["prompts"] == runs["plain"][0]["prompts"] for path in order}
    same_answers = {path: runs[path][0]["responses"] == runs["plain"][0]["responses"] for path in order}
    ratios = {name: [a["wall_s"] / p["wall_s"] for a, p in zip(runs[path], runs[plain])]
              for name, (path, plain) in COMPARISONS.items()}
    rows = []
    for path in order:
        walls = [r["wall_s"] for r in runs[path]]
        models = [r["model_s"] for r in runs[path]]
        rows.append({"path": path, "median wall s": record.median(walls), "median model s": record.median(models),
                     "median harness s": record.median([w - m for w, m in zip(walls, models)]),
                     "task build s (first)": builds[path][0], "task build s (median)": record.median(builds[path]),
                     "exact_match": runs[path][0]["score"], "prompts identical to plain": identical[path]})
    print(f"{args.limit} test examples; responses identical to plain: {same_answers}\n")
    print(record.table(rows))
    medians = {name: record.median(r) for name, r in ratios.items()}
    for name, values in ratios.items():
        print(f"\n{name}: wall-time ratio to plain, median {medians[name]:.3f} over {len(values)} runs "
              f"({', '.join(f'{r:.3f}' for r in values)}); goal <= 1.05")
    print(f"load average during the runs: {min(loads)}-{max(loads)}")
    record.save("harness_overhead", {
        "limit": args.limit, "blocks": args.blocks, "load_average_1min_at_start": load_at_start, "load_averages": loads,
        "prompts_identical": identical, "responses_identical": same_answers, "ratios": ratios, "median_ratios": medians,
        "rows": rows, "task_builds_s": builds,
        "runs": {p: [{k: v for k, v in r.items() if k not in ("prompts", "responses")} for r in rs] for p, rs in runs.items()},
    })


if __name__ == "__main__":
    main()
