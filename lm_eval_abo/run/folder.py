"""The files of one run directory, `<output>/<task>/<method>/`: the artifact, the checkpoint, the report,
lm-eval's results, the optimizer calls of each round; what a failed run kept, and whether a saved run
may be continued."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from lm_eval_abo.infra.errors import AboError
from lm_eval_abo.infra.files import append_line, read_json
from lm_eval_abo.tasks import export


class RunFolder:
    def __init__(self, output: str, task: str, method: str, export_name: str | None = None):
        self.dir = Path(output) / task / method
        self.artifact = self.dir / "best.yaml"
        self.state = self.dir / "state.json"
        self.report = self.dir / "report.md"
        self.results = self.dir / "results"
        self.engine = self.dir / method  # where a method's own engine keeps its state (GEPA: <run>/gepa/)
        self.export_name = export_name or export.default_name(task)

    def calls_file(self, round_no: int) -> Path:
        """The optimizer calls of a round, each as rendered and answered (JSON Lines)."""
        return self.dir / "metaprompts" / f"round-{round_no}.jsonl"

    def record_call(self, call: dict) -> None:
        append_line(self.calls_file(call["round"]), json.dumps(call, ensure_ascii=False))

    def saved_rounds(self) -> str:
        """What a failed run kept, and how to continue it."""
        if not self.state.exists():
            return "no round was completed"
        done = read_json(self.state)["state"]["round"]
        saved = f"rounds 0-{done} are" if done else "round 0 is"
        return f"{saved} saved in {self.dir}; rerun with --resume to continue from there"

    def unwritable(self, error: OSError | sqlite3.Error) -> AboError:
        """A write that failed (a full disk, a folder made read-only), with what the run kept."""
        if not isinstance(error, OSError):
            what = f"lm-eval's target cache (--use_cache) cannot be written: {error}"
        elif error.filename:
            what = f"cannot write {error.filename}: {error.strerror or error}"
        else:
            what = f"cannot write in {self.dir}: {error.strerror or error}"
        return AboError(f"{what}; {self.saved_rounds()}")

    def saved(self, fingerprint: dict, resume: bool, dry_run: bool, out) -> dict | None:
        """The saved run to continue (its state and splits), after checking it may be continued with
        settings of this `fingerprint`."""
        if not self.state.exists():
            if resume:
                out(f"nothing to resume in {self.dir}: starting a new run")
            return None
        if not resume:
            if dry_run:
                return None
            raise AboError(f"{self.dir} holds an earlier run; pass --resume to continue it, or choose another --output")
        saved = read_json(self.state)
        # a setting newer than the saved run (not in its config) cannot differ from it
        differs = [k for k, v in fingerprint.items() if k in saved["config"] and saved["config"][k] != v]
        if differs:
            raise AboError(f"--resume: the run in {self.dir} was made with other settings ({', '.join(differs)})")
        saved["state"]["stopped"] = None  # e.g. a budget stop: resuming with a larger budget continues
        seed = self.engine / "seed.json"  # GEPA's seed, where earlier versions kept it beside its engine's state
        if not saved["state"].get("method_state") and seed.exists():
            saved["state"]["method_state"] = read_json(seed)
        out(f"resuming {self.dir} after round {saved['state']['round']}")
        return saved
