"""The prompt being optimized, and how its parts reach lm-eval.

An abo_* task renders a `Prompt` through lm-eval's own prompt assembly, never by templating its text:
the parts become document fields that the task YAML names (`description: abo_system`,
`doc_to_text: "{{abo_user}}..."`, `gen_prefix: abo_answer_prefix`), and the demonstrations become
lm-eval few-shot examples. Field values are inserted literally, so optimizer-written text that looks
like a template (`{{ 7*7 }}`) reaches the model as written.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass

from lm_eval_abo.errors import AboError

PLACEMENTS = ("system", "user")
DEMO_SPLIT = "abo_demos"
DEMO_OUTPUT = "abo_demo_output"


@dataclass(frozen=True)
class Demonstration:
    """A worked example: a training document and the answer the target should imitate."""

    doc: dict
    output: str


@dataclass(frozen=True)
class Prompt:
    """What an optimizer changes. Placement "system" puts the instruction in lm-eval's task
    description (the system message under a chat template, the top of the prompt otherwise);
    "user" puts it at the start of each question turn."""

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

    def doc_fields(self) -> dict[str, str]:
        """The document fields the abo_* task YAMLs read (see module docstring)."""
        block = self.instruction_block()
        # lm-eval joins plain-text parts with no separator, so a non-empty part ends with a blank line
        return {
            "abo_system": f"{block}\n\n" if block and self.placement == "system" else "",
            "abo_user": f"{block}\n\n" if block and self.placement == "user" else "",
            "abo_answer_prefix": self.answer_prefix,
        }

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


def demo_rows(prompt: Prompt) -> list[dict]:
    """The few-shot split: each demonstration's document with its worked answer. lm-eval puts the
    answer prefix before every demonstration answer, so an answer already starting with it loses it."""
    fields = prompt.doc_fields()
    prefix = prompt.answer_prefix.strip()
    rows = []
    for demo in prompt.demonstrations:
        output = demo.output.strip()
        if prefix and output.startswith(prefix):
            output = output[len(prefix) :].lstrip()
        rows.append({**demo.doc, **fields, DEMO_OUTPUT: output})
    return rows

