"""The prompt being optimized: an instruction (with, for ABO, a numbered procedure and an answer format),
where it goes, demonstrations and an answer prefix. `tasks.fields` puts it into any lm-eval task's own
fields; its text is always data, never a template.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass

from lm_eval_abo.infra.errors import AboError

PLACEMENTS = ("system", "user")


@dataclass(frozen=True)
class Demonstration:
    """A worked example: a training document and the answer the target should imitate."""

    doc: dict
    output: str


@dataclass(frozen=True)
class Prompt:
    """What an optimizer changes. Placement "system" puts the instruction in lm-eval's task
    description (the system message under a chat template, the top of the prompt otherwise);
    "user" puts it at the start of each question turn. Empty parts leave the task's own in place,
    so `Prompt()` is the task exactly as written."""

    instruction: str = ""
    placement: str = "system"
    procedure: tuple[str, ...] = ()
    answer_format: str = ""  # how the answer must end, so the task's filter finds it (kept fixed by optimizers)
    demonstrations: tuple[Demonstration, ...] = ()
    answer_prefix: str = ""

    def instruction_block(self) -> str:
        """The instruction, the numbered procedure steps, then the answer format."""
        steps = "\n".join(f"Step {i}: {step}" for i, step in enumerate(self.procedure, 1))
        parts = [self.instruction.strip(), steps, self.answer_format.strip()]
        return "\n\n".join(p for p in parts if p)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["procedure"] = list(self.procedure)
        d["demonstrations"] = [asdict(demo) for demo in self.demonstrations]
        return d

    def sha256(self) -> str:
        canonical = json.dumps(self.to_dict(), sort_keys=True, ensure_ascii=False)
        return hashlib.sha256(canonical.encode("utf-8")).hexdigest()

    @classmethod
    def from_dict(cls, data, where: str = "prompt") -> Prompt:
        """Build from plain data (YAML, JSON), with a clear error for every malformed field."""
        if not isinstance(data, dict):
            raise AboError(f"{where} must be a mapping, got {type(data).__name__}")
        unknown = set(data) - {f.name for f in cls.__dataclass_fields__.values()}
        if unknown:
            raise AboError(f"{where} has unknown field(s): {', '.join(sorted(unknown))}")
        for name in ("instruction", "answer_format", "answer_prefix", "placement"):
            if not isinstance(data.get(name, ""), str):
                raise AboError(f"{where}.{name} must be text")
        placement = data.get("placement", "system")
        if placement not in PLACEMENTS:
            raise AboError(f"{where}.placement must be one of {', '.join(PLACEMENTS)}, got {placement!r}")
        procedure = data.get("procedure") or []
        if not isinstance(procedure, list) or not all(isinstance(s, str) for s in procedure):
            raise AboError(f"{where}.procedure must be a list of text steps")
        demos = []
        for i, demo in enumerate(data.get("demonstrations") or []):
            if not (isinstance(demo, dict) and isinstance(demo.get("doc"), dict) and isinstance(demo.get("output"), str)):
                raise AboError(f"{where}.demonstrations[{i}] must have a mapping 'doc' and a text 'output'")
            demos.append(Demonstration(doc=dict(demo["doc"]), output=demo["output"]))
        return cls(
            instruction=data.get("instruction", ""),
            placement=placement,
            procedure=tuple(procedure),
            answer_format=data.get("answer_format", ""),
            demonstrations=tuple(demos),
            answer_prefix=data.get("answer_prefix", ""),
        )
