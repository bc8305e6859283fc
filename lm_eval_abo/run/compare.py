"""`lm-eval-abo compare`: models compared at their own prompts. For each task and target, one `optimize` run with
the same method, budget, splits, seed and optimizer: the cells of one grid (`run/grid`: `--executor local|ray`,
one projection, the caps shared, one ledger, `--resume` skipping finished runs). Then every (prompt, model) pair
is evaluated through lm-eval on the same held-out test documents, lm-eval's results and samples kept per pair:
the prompts are the task's baseline, each model's own best, and the shared prompt: one more cell of the grid, one
`optimize` run for all the targets at once (the same method, budget, splits, seed and optimizer) under the
objective over their dev scores (`--objective mean|min`; none: no shared prompt). Written as the transfer matrix, the rankings with
Kendall's tau and the rank changes that hold (`reports/compare`): compare.md, .csv, _rankings.csv, .html and
.json in `--output`.

Folders: `<output>/runs/<label>/<task>/<method>/` (each run), `<output>/shared/<task>/<method>/` (the shared
prompt's run), `<output>/matrix/<task>/<row>/<label>/` (each
pair's lm-eval results and samples), `<output>/grid.md` (the grid's cells). The target cache
(`<output>/target-cache*` unless `--use_cache` names another) answers the pairs a run already evaluated.
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

from lm_eval_abo.config import OptimizeConfig
from lm_eval_abo.cost.ledger import Caps, Ledger, total
from lm_eval_abo.infra.errors import AboError, one_line
from lm_eval_abo.infra.lock import FolderLock
from lm_eval_abo.reports import compare as reports
from lm_eval_abo.panel import OBJECTIVES
from lm_eval_abo.reports.compare.matrix import BASELINE, Setting, build
from lm_eval_abo.reports.run_report import money
from lm_eval_abo.run.grid import run_grid
from lm_eval_abo.run.grid.driver import executor_of
from lm_eval_abo.run.optimize import finished, plan_run
from lm_eval_abo.run.targets import Targets
from lm_eval_abo.run.session import attach_target, caps_of, plan_session, prices_of, resolve_run, target_of
from lm_eval_abo.run.transfer import Entrant, evaluated, slug

OWN, SHARED = "own best", "shared"
SHARED_ROW = "shared prompt"


def own_row(label: str) -> str:
    return f"best for {label}"


def cell_config(config: OptimizeConfig, task: str, entrant: Entrant, folder: Path) -> OptimizeConfig:
    return replace(config, task=task, output=str(folder / "runs" / entrant.label), **entrant.settings(), objective=None,
                   targets=())


def shared_config(config: OptimizeConfig, task: str, targets: list[Entrant], folder: Path, objective: str
                  ) -> OptimizeConfig:
    """The run of the shared prompt: one prompt optimized for every target at once under `objective`."""
    return replace(config, task=task, output=str(folder / "shared"), **targets[0].settings(), objective=objective,
                   targets=tuple((e.label, e.model, e.model_args, e.target_price) for e in targets))


def projected_evaluations(configs: dict, rows: int, out, shared: int = 0) -> Ledger:
    """What the evaluations after the grid will use at most: `rows` prompts on each (target, task)'s test
    documents, at the size of the run's projected candidate prompt (`shared`: the runs of the shared prompt, for the
    count shown). A run that cannot be planned (a task that is not found, a metric it lacks, a cap
    without a price) stops the comparison here, in one line."""
    found = []
    for config in configs.values():
        resolved, method, params = resolve_run(config)
        session, plan = plan_run(resolved, method, params)
        per_prompt = plan.test.target.calls / 2  # the projection's test evaluation holds two prompts
        found.append(Ledger(target=plan.per_request.scaled(per_prompt * rows)))
    projected = total(found)
    used = projected.target
    also = " and one for all the targets per task" if shared else ""
    out(f"compare: one {config.method} run per (target, task){also}, {len(configs) + shared} in all (the grid below), "
        f"then {rows} "
        f"prompts evaluated on test on each, projected at most: {used.calls:,} target "
        f"requests, {used.tokens:,} tokens, {money(projected.to_dict())} (kept aside from the caps)")
    return projected


def less(caps: Caps, reserve: Ledger) -> Caps:
    """The caps the grid shares, after what the evaluations after it are projected to use."""
    cost = None if caps.max_cost is None else caps.max_cost - reserve.cost_usd
    tokens = None if caps.max_target_tokens is None else caps.max_target_tokens - reserve.target.tokens
    if (cost is not None and cost < 0) or (tokens is not None and tokens < 0):
        raise AboError(f"the caps do not cover the evaluations of every prompt on every target alone (projected "
                       f"{money(reserve.to_dict())}, {reserve.target.tokens:,} target tokens): raise --max-cost or "
                       "--max-target-tokens, or lower --test-limit")
    return Caps(cost, tokens, caps.max_optimizer_calls)


def _prompts(configs: dict, targets: list[Entrant], task: str, shared: OptimizeConfig | None) -> list[dict]:
    """The rows of a task: the baseline, each target's own best, then the shared prompt (where their runs
    finished)."""
    rows = [{"row": BASELINE, "prompt": None, "source": "the task's own prompt", "method": "baseline", "detail": ""}]
    for e in targets:
        outcome = finished(configs[(e.label, task)])
        if outcome is None:
            continue
        a = outcome.artifact_data
        same = " (the baseline's prompt: nothing scored better on dev)" if outcome.result.best.key == \
            outcome.result.baseline.key else ""
        rows.append({"row": own_row(e.label), "prompt": a.prompt, "source": str(outcome.artifact), "method": a.method,
                     "detail": f"{a.method} on {e.label}: dev {a.scores['dev']['value']:.3f} (baseline "
                               f"{a.scores['baseline_dev']['value']:.3f}), test {a.scores['test']['value']:.3f}{same}"})
    outcome = finished(shared) if shared else None
    if outcome:
        a = outcome.artifact_data
        rows.append({"row": SHARED_ROW, "prompt": a.prompt, "source": str(outcome.artifact), "method": a.method,
                     "detail": f"{a.method} on all {len(targets)} targets at once: dev {shared.objective} "
                               f"{a.scores['dev']['value']:.3f} (baseline {a.scores['baseline_dev']['value']:.3f})",
                     "artifact": a})
    return _same_as_earlier(rows)


def _same_as_earlier(rows: list[dict]) -> list[dict]:
    """Marks a row whose prompt is an earlier optimized row's (by sha256), so that equal scores read as one
    prompt found twice, not as two prompts that agree."""
    seen = {}
    for r in rows[1:]:
        sha = r["prompt"].sha256()
        if sha in seen:
            r["detail"] += f" (the same prompt as {seen[sha]})"
        seen.setdefault(sha, r["row"])
    return rows


def shared_of(rows: list[dict], objective: str) -> dict | None:
    """The shared prompt's dev scores as its run recorded them: the objective, and each target's, beside the
    baseline's."""
    [a] = [r["artifact"] for r in rows if r["row"] == SHARED_ROW] or [None]
    if a is None:
        return None
    per_model = a.scores["per_model"]
    return {"row": SHARED_ROW, "objective": objective, "value": a.scores["dev"]["value"], "models": sorted(per_model),
            "values": {BASELINE: a.scores["baseline_dev"]["value"], SHARED_ROW: a.scores["dev"]["value"]},
            "dev": {BASELINE: {m: s["baseline_dev"]["value"] for m, s in per_model.items()},
                    SHARED_ROW: {m: s["dev"]["value"] for m, s in per_model.items()}}}


def evaluate_all(configs: dict, targets: list[Entrant], tasks: list[str], loaded: Targets, folder: Path, out,
                 shared: dict | None = None):
    """Every row of each task on every target, the loaded target first (`shared`: the shared prompt's run of
    each task, if any); returns the tasks' parts of the result, the evaluations' ledger and what failed."""
    shared = shared or {}
    rows = {task: _prompts(configs, targets, task, shared.get(task)) for task in tasks}
    cells = {task: [] for task in tasks}
    seen: dict[str, dict] = {}  # task -> the facts of its first session (test documents, metric)
    ledgers, failed = [], []
    current = next((e for e in targets if loaded.target == target_of(configs[(e.label, tasks[0])])), None)
    for e in sorted(targets, key=lambda e: e is not current):  # the loaded target first: no second load
        for task in tasks:
            session = None
            try:
                config = resolve_run(configs[(e.label, task)])[0]
                session = plan_session(config)
                ids = session.split_ids()["test"]
                first = seen.setdefault(task, {"ids": ids, "bridge": session.bridge, "seed": session.seed})
                if ids != first["ids"]:
                    raise AboError(f"its test documents of {task} differ from those of the other targets")
                attach_target(session, loaded.get(target_of(config)), e.price())
                for r in rows[task]:
                    prompt = r["prompt"] or session.default_prompt
                    provenance = {"task": task, "method": r["method"], "source": r["source"],
                                  "prompt_sha256": prompt.sha256(), "test_docs": session.n_test}
                    where = folder / "matrix" / task / slug(r["row"]) / e.label
                    cell = evaluated(session, prompt, r["row"], e.label, where, provenance)
                    cells[task].append(cell)
                    out(f"{task}: {r['row']} on {e.label}: {cell.score:.3f} (n={cell.n})")
            except AboError as error:
                failed.append((task, e.label, one_line(error)))
                out(f"{task}: evaluations on {e.label} failed: {one_line(error)}")
            if session is not None:  # what it used, also where it failed midway
                ledgers.append(session.ledger)
    parts = []
    for task in tasks:
        if task not in seen:
            parts.append({"task": task, "metric": "-", "n_test": 0, "prompts": [], "dev": {}, "shared": None,
                          "matrix": build([], [], [], []).to_dict(),
                          "failed": [f"{label}: {error}" for t, label, error in failed if t == task]})
            continue
        labels = [e.label for e in targets]
        present = {r["row"] for r in rows[task]}
        bridge = seen[task]["bridge"]
        settings = [Setting(BASELINE, {m: BASELINE for m in labels}),
                    Setting(OWN, {m: own_row(m) for m in labels if own_row(m) in present})]
        one = shared_of(rows[task], shared[task].objective) if task in shared else None
        if one:
            settings.append(Setting(SHARED, {m: SHARED_ROW for m in labels}))
        matrix = build(cells[task], [r["row"] for r in rows[task]], labels, settings, bridge.higher_is_better,
                       seen[task]["seed"])
        parts.append({"task": task, "metric": bridge.metric_key, "n_test": len(seen[task]["ids"]),
                      "matrix": matrix.to_dict(),
                      "prompts": [{k: r[k] for k in ("row", "source", "detail")} for r in rows[task]],
                      "dev": one["dev"] if one else {}, "shared": one and {k: v for k, v in one.items() if k != "dev"},
                      "failed": [f"{label}: {error}" for t, label, error in failed if t == task]})
    return parts, total(ledgers), [f"evaluations of {task} on {label}: {error}" for task, label, error in failed]


def compare(config: OptimizeConfig, tasks: list[str], targets: list[Entrant], executor: str = "local",
            ray_address: str | None = None, out=print, loaded: Targets | None = None,
            objective: str | None = "mean") -> dict:
    """Optimize `config.method` on each task for each target (one grid), evaluate every prompt on every target, and
    write the comparison to `config.output`. `objective` ("mean", "min", None: none): the shared prompt's run, one
    more cell of the grid, optimizes one prompt for all the targets under it. `loaded`: where targets are loaded from (default: one at a
    time). The result's "failed" lists what failed (runs and evaluations), whose rows and cells are left out."""
    if not tasks:
        raise AboError("--tasks: name at least one task")
    if len(targets) < 2:
        raise AboError(f"compare needs two or more targets (--model ... once per target), got {len(targets)}")
    if objective not in (None, *OBJECTIVES):
        raise AboError(f"--objective must be one of {', '.join(OBJECTIVES)} or none, got {objective!r}")
    folder = Path(config.output)
    config = replace(config, use_cache=config.use_cache or str(folder / "target-cache"))
    configs = {(e.label, task): cell_config(config, task, e, folder) for e in targets for task in tasks}
    shared = {task: shared_config(config, task, targets, folder, objective) for task in tasks} if objective else {}
    executor_of(executor, ray_address)  # Ray missing, or an address without it: one line before anything runs
    for e in targets:  # an unknown backend, a malformed --model_args or a cap without a price, too
        target_of(configs[(e.label, tasks[0])]).backend()
        prices_of(configs[(e.label, tasks[0])])
    loaded, started = loaded or Targets(), time.time()
    with FolderLock(folder, "compare", out):  # each run also locks its own folder
        reserve = projected_evaluations(configs, 1 + len(targets) + bool(objective), out, len(shared))
        grid = run_grid([*configs.values(), *shared.values()], folder, executor, ray_address,
                        caps=less(caps_of(config), reserve), resume=config.resume, lm=loaded if executor == "local" else None, out=out)
        parts, used, failed = evaluate_all(configs, targets, tasks, loaded, folder, out, shared)
        failed = [f"run {r.name}: {r.error}" for r in grid.failed] + failed
        result = {
            "title": "Models compared at their own prompts", "kind": "compare", "method": config.method,
            "optimizer": config.optimizer, "seed": config.seed, "targets": [e.shown() for e in targets],
            "about": f"For each target one {config.method} run with the same optimizer ({config.optimizer}), budget, "
                     f"splits and seed ({config.seed}); then every prompt evaluated on every target by lm-eval on the "
                     "same held-out test documents. Differences are paired per document, with 95% bootstrap intervals."
                     + (f" The shared prompt is one more {config.method} run, for all the targets at once, under the "
                        f"{objective} of their dev scores." if objective else ""),
            "tasks": parts, "failed": failed, "seconds": round(time.time() - started, 1),
            "ledger": {"optimize runs": grid.ledger.to_dict(), "evaluations": used.to_dict(),
                       "total": grid.ledger.plus(used).to_dict()},
        }
        files = reports.write(result, folder, "compare")
    out(reports.text.markdown(result))
    out(f"written: {', '.join(str(f) for f in files)}")
    if failed:
        out(f"{len(failed)} failed (their rows and cells are left out): " + "; ".join(failed))
    return result
