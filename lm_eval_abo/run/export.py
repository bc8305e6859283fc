"""A prompt as a plain lm-eval task: written beside the artifact at the end of a run, or later from any
artifact (`lm-eval-abo export lm-eval`), and checked against the requests of the task with the prompt."""

from __future__ import annotations

from pathlib import Path

from lm_eval_abo.artifact import store
from lm_eval_abo.config import HarnessSettings
from lm_eval_abo.infra.errors import AboError
from lm_eval_abo.run.session import artifact_session
from lm_eval_abo.tasks import export


def provenance_of(artifact: store.Artifact, path: Path, test_docs: int) -> dict:
    """What lm-eval's results of a prompt record about it (`configs.<task>.metadata.abo`)."""
    return {"task": artifact.task, "method": artifact.method, "source": str(path),
            "prompt_sha256": artifact.prompt.sha256(), "test_docs": test_docs}


def export_plain_task(bridge, prompt, out_dir: Path, name: str, provenance: dict) -> dict:
    """The prompt as a plain lm-eval task in `out_dir`, checked (removed again if the check fails); what
    the artifact records of it."""
    try:
        export.write(bridge, prompt, out_dir, name, provenance)
        checked = export.verify(bridge, prompt, out_dir, name)
    except AboError:
        export.remove(out_dir, name)
        raise
    return {"task": name, "yaml": f"{name}.yaml", "checked_documents": checked}


def export_artifact(artifact_path: str | Path, out_dir: str | Path | None, name: str | None,
                    harness: HarnessSettings) -> tuple[Path, int]:
    """`lm-eval-abo export lm-eval`: an artifact's prompt as the plain task its run wrote (on the run's
    held-out test documents); returns the YAML's path and the documents checked."""
    artifact_path = Path(artifact_path)
    artifact = store.load(artifact_path)
    session = artifact_session(artifact, harness)
    out_dir = Path(out_dir) if out_dir else artifact_path.parent
    name = name or artifact.export.get("task") or export.default_name(artifact.task)
    done = export_plain_task(session.bridge, artifact.prompt, out_dir, name,
                             provenance_of(artifact, artifact_path, session.n_test))
    return out_dir / done["yaml"], done["checked_documents"]
