"""`lm-eval-abo transfer`: a finished prompt scored on other targets against their baselines, on the held-out
test documents its run used, each through lm-eval; the transfer matrix of `compare` with one prompt row.

Also what `compare` builds on: the targets of a comparison (`Entrant`, `entrants`), and a prompt evaluated on
one target as a cell of the matrix (`evaluated`), with lm-eval's results and samples kept.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from pathlib import Path

from lm_eval_abo.artifact import store
from lm_eval_abo.config import HarnessSettings
from lm_eval_abo.cost.ledger import Price, total
from lm_eval_abo.cost.prices import target_price
from lm_eval_abo.infra.errors import AboError, one_line
from lm_eval_abo.infra.flags import parse_pairs
from lm_eval_abo.infra.lock import FolderLock
from lm_eval_abo.infra.redact import redact_arg_string
from lm_eval_abo.reports import compare as reports
from lm_eval_abo.reports.compare.matrix import BASELINE, Evaluated, Setting, build
from lm_eval_abo.run import evaluation
from lm_eval_abo.run.session import artifact_session, attach_target
from lm_eval_abo.run.targets import Targets

LABEL = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}")


@dataclass(frozen=True)
class Entrant:
    """A target of a comparison: lm-eval's `--model` and `--model_args`, its own price, and the label that names
    it in the tables and its folders."""

    label: str
    model: str
    model_args: str = ""
    target_price: tuple[float, float] | None = None

    def settings(self) -> dict:
        """The settings of a run or an evaluation on this target."""
        return {"model": self.model, "model_args": self.model_args, "target_price": self.target_price}

    def price(self) -> Price | None:
        """What the target's tokens cost (None: unknown)."""
        return target_price(self.model, parse_pairs(self.model_args, "--model_args"), self.target_price)

    def shown(self) -> dict:
        return {"label": self.label, "model": self.model, "model_args": redact_arg_string(self.model_args)}


def label_of(model: str, model_args: str) -> str:
    """The name a target goes by: its model's name in `model_args` (`model=`, `pretrained=`; the last part of a
    path or hub name), else the backend's."""
    args = parse_pairs(model_args, "--model_args")
    name = str(args.get("model") or args.get("pretrained") or model).rstrip("/").rpartition("/")[2] or model
    name = re.sub(r"[^A-Za-z0-9_.\-]+", "-", name).strip("-.") or "target"
    return name[:64]


def entrants(given: list[dict], least: int = 1) -> list[Entrant]:
    """The targets of `--model` (with its `--model_args`, `--label`, `--target-price`), checked: at least
    `least`, each once, labels unique (a label a target gets by default is numbered where two share it)."""
    if len(given) < least:
        raise AboError(f"give at least {least} target{'s' if least > 1 else ''}: --model BACKEND [--model_args ARGS] "
                       f"[--label NAME], once per target (got {len(given)})")
    found, seen = [], set()
    for g in given:
        model, args = g["model"], g.get("model_args") or ""
        if (model, args) in seen:
            raise AboError(f"--model {model} --model_args {redact_arg_string(args)} is given twice")
        seen.add((model, args))
        label = g.get("label")
        if label is not None and not LABEL.fullmatch(label):
            raise AboError(f"--label {label!r}: a label is 1-64 letters, digits and _ . - (it names a folder)")
        found.append(Entrant(label or "", model, args, g.get("target_price")))
    given_labels = [e.label for e in found if e.label]
    twice = sorted({x for x in given_labels if given_labels.count(x) > 1})
    if twice:
        raise AboError(f"--label {twice[0]} names two targets")
    out, taken = [], set(given_labels)
    for e in found:
        label = e.label
        if not label:
            base = label = label_of(e.model, e.model_args)
            number = 1
            while label in taken:
                number += 1
                label = f"{base}-{number}"
            taken.add(label)
        out.append(Entrant(label, e.model, e.model_args, e.target_price))
    return out


def evaluated(session, prompt, row: str, model: str, folder: Path, provenance: dict) -> Evaluated:
    """`prompt` (row `row`) on the session's target (column `model`) on the test documents, through lm-eval, its
    results and samples kept in `folder`."""
    test = evaluation.evaluate(session, prompt, folder, provenance)
    return Evaluated(row, model, test.score["value"], test.score["stderr"], test.score["n"], test.items, test.correct,
                     str(test.results), test.aggregate)


def slug(row: str) -> str:
    """A row's folder name."""
    return re.sub(r"[^A-Za-z0-9_.\-]+", "-", row).strip("-") or "prompt"


def transfer(artifact_path: str | Path, targets: list[Entrant], harness: HarnessSettings, output: str | Path,
             out=print, loaded: Targets | None = None) -> dict:
    """The artifact's prompt and the task's baseline on each target, on the test documents the artifact's run
    held out; written to `output` as transfer.md, .csv, _rankings.csv, .html and .json."""
    path = Path(artifact_path)
    artifact = store.load(path)
    row = f"{artifact.method} prompt"
    folder = Path(output)
    loaded, started = loaded or Targets(), time.time()
    sessions = []
    for e in targets:  # every target checked and its split rebuilt before any model loads
        session = artifact_session(artifact, harness, **e.settings())
        session.target_spec.backend()
        sessions.append((e, session))
    n_test = sessions[0][1].n_test
    out(f"transfer: the baseline and {path} on {len(targets)} targets x {n_test} test documents of {artifact.task} "
        f"(at most {2 * len(targets) * n_test} target requests)")
    cells, failed, ledgers = [], [], []
    with FolderLock(folder, "transfer", out):
        for e, session in sessions:
            try:
                attach_target(session, loaded.get(session.target_spec), e.price())
                for name, prompt, source, method in ((BASELINE, session.default_prompt, "baseline", "baseline"),
                                                     (row, artifact.prompt, str(path), artifact.method)):
                    provenance = {"task": artifact.task, "method": method, "source": source,
                                  "prompt_sha256": prompt.sha256(), "test_docs": session.n_test}
                    cell = evaluated(session, prompt, name, e.label, folder / "results" / slug(name) / e.label,
                                     provenance)
                    cells.append(cell)
                    out(f"{e.label}: {name}: {cell.score:.3f} (n={cell.n})")
            except AboError as error:
                failed.append(f"{e.label}: {one_line(error)}")
                out(f"{e.label}: failed: {one_line(error)}")
            ledgers.append(session.ledger)
        labels = [e.label for e in targets]
        bridge = sessions[0][1].bridge
        matrix = build(cells, [BASELINE, row], labels, [Setting(BASELINE, {m: BASELINE for m in labels}),
                                                        Setting(row, {m: row for m in labels})],
                       bridge.higher_is_better, sessions[0][1].seed)
        result = {
            "title": f"Transfer of {path}", "kind": "transfer", "artifact": str(path),
            "targets": [e.shown() for e in targets],
            "about": f"The {artifact.method} prompt of {path} (optimized for {made_for(artifact)}) and the task's baseline "
                     "on each target, through lm-eval, on the held-out test documents of the run that made it; "
                     "differences are paired per document with 95% bootstrap intervals.",
            "tasks": [{"task": artifact.task, "metric": bridge.metric_key, "n_test": n_test, "matrix": matrix.to_dict(),
                       "failed": failed, "prompts": [
                           {"row": BASELINE, "source": "the task's own prompt", "detail": ""},
                           {"row": row, "source": str(path), "detail": _dev(artifact)}]}],
            "ledger": {"evaluations": total(ledgers).to_dict()}, "failed": failed,
            "seconds": round(time.time() - started, 1),
        }
        files = reports.write(result, folder, "transfer")
    out(reports.text.markdown(result))
    out(f"written: {', '.join(str(f) for f in files)}")
    return result


def made_for(artifact) -> str:
    """The target or targets the artifact's prompt was optimized for: several by their labels and the objective
    over them."""
    several = artifact.target.get("targets")
    if several:
        return f"{', '.join(t['label'] for t in several)} ({artifact.target.get('objective', 'mean')} of their scores)"
    return " ".join(str(artifact.target[k]) for k in ("model", "model_args") if artifact.target.get(k)) or "?"


def _dev(artifact) -> str:
    dev, base = artifact.scores.get("dev"), artifact.scores.get("baseline_dev")
    if not dev:
        return ""
    return f"dev {dev['value']:.3f}" + (f" (baseline dev {base['value']:.3f})" if base else "") + \
        f" on {made_for(artifact)}"
