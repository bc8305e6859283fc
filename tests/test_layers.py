"""The house in layers, measured from the package's own source: no import circle (imports inside
functions included), each layer imports only the layers below it, the run's settings stop at the
session, and no module grows past 350 lines."""

import ast
import sys
from pathlib import Path

import pytest
from conftest import rule_lm
from fakeserver import FakeServer

import lm_eval_abo
from lm_eval_abo.config import OptimizeConfig
from lm_eval_abo.run.optimize import optimize

PACKAGE = Path(lm_eval_abo.__file__).parent
MAX_LINES = 350

# top down; a module belongs to the first layer that names it or its package
LAYERS = [
    ("commands", ["lm_eval_abo", "lm_eval_abo.__main__", "lm_eval_abo.cli", "lm_eval_abo.commands",
                  "lm_eval_abo.optimize", "lm_eval_abo.data"]),  # the last two: shims at old import paths
    ("run", ["lm_eval_abo.run", "lm_eval_abo.studies", "lm_eval_abo.promptfoo"]),
    ("reports", ["lm_eval_abo.reports"]),
    ("methods", ["lm_eval_abo.optimizers"]),
    ("bridge to lm-eval", ["lm_eval_abo.scoring", "lm_eval_abo.panel", "lm_eval_abo.tasks"]),
    ("artifact", ["lm_eval_abo.artifact"]),
    ("services", ["lm_eval_abo.config", "lm_eval_abo.infra", "lm_eval_abo.cost", "lm_eval_abo.embedded"]),
]
# the settings are read at the door: by the commands and the run, nothing below
READS_SETTINGS = {"commands", "run"}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imported(module: str, node: ast.Import | ast.ImportFrom) -> set[str]:
    """The package's modules an import statement loads (`from pkg import sub` loads pkg.sub)."""
    if isinstance(node, ast.Import):
        names = [alias.name for alias in node.names]
    else:
        base = node.module or ""
        if node.level:
            package = module if MODULES[module].name == "__init__.py" else module.rpartition(".")[0]
            parts = package.split(".")[: len(package.split(".")) - node.level + 1]
            base = ".".join([*parts, *([node.module] if node.module else [])])
        names = [f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names]
    found = set()
    for name in names:
        while name and name not in MODULES:
            name = name.rpartition(".")[0]
        if name.startswith("lm_eval_abo") and name != module:
            found.add(name)
    return found


def graph() -> dict[str, set[str]]:
    """Every module's imports of the package, at module level and inside functions alike."""
    edges = {}
    for module, path in MODULES.items():
        nodes = [n for n in ast.walk(ast.parse(path.read_text())) if isinstance(n, ast.Import | ast.ImportFrom)]
        edges[module] = set().union(*(imported(module, n) for n in nodes)) if nodes else set()
    return edges


def layer(module: str) -> int:
    for rank, (_, prefixes) in enumerate(LAYERS):
        if any(module == p or (p != "lm_eval_abo" and module.startswith(p + ".")) for p in prefixes):
            return rank
    raise AssertionError(f"{module} is in no layer: add it to LAYERS")


def circle(edges: dict[str, set[str]]) -> list[str] | None:
    state, path = {}, []

    def visit(module):
        state[module] = "open"
        path.append(module)
        for other in sorted(edges[module]):
            if state.get(other) == "open":
                return path[path.index(other):] + [other]
            if other not in state and (found := visit(other)):
                return found
        state[module] = "done"
        path.pop()
        return None

    for module in sorted(edges):
        if module not in state and (found := visit(module)):
            return found
    return None


def test_the_graph_sees_the_imports_it_should():
    edges = graph()
    assert "lm_eval_abo.optimizers.base" in edges["lm_eval_abo.optimizers.abo"]
    assert "lm_eval_abo.run.optimize" in edges["lm_eval_abo.commands.runs"], "an import inside a function counts"
    assert circle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"] and circle({"a": {"b"}, "b": set()}) is None


def test_no_import_circle_even_through_imports_inside_functions():
    assert circle(graph()) is None


def test_each_layer_imports_only_itself_and_the_layers_below():
    upward = [f"{m} ({LAYERS[layer(m)][0]}) imports {o} ({LAYERS[layer(o)][0]})"
              for m, others in graph().items() for o in sorted(others) if layer(o) < layer(m)]
    assert upward == []


def test_the_settings_module_is_read_only_by_the_commands_and_the_run():
    config = "lm_eval_abo.config"
    readers = sorted(m for m, others in graph().items() if config in others)
    assert readers and all(LAYERS[layer(m)][0] in READS_SETTINGS for m in readers), readers
    leaves = graph()[config]
    assert all(layer(m) == len(LAYERS) - 1 for m in leaves), f"config imports only services: {sorted(leaves)}"


@pytest.mark.parametrize("module", sorted(MODULES))
def test_no_module_is_longer_than_350_lines(module):
    assert len(MODULES[module].read_text().splitlines()) <= MAX_LINES


def test_the_run_settings_reach_at_most_six_modules(tmp_path):
    """Follow the OptimizeConfig through a whole optimize run (a rule-based target, a scripted optimizer):
    every function of the package that holds it in a local variable. It is unpacked at the session."""
    reached = set()

    def trace(frame, event, arg):
        if event == "call":
            module = frame.f_globals.get("__name__", "")
            if module.startswith("lm_eval_abo") and any(isinstance(v, OptimizeConfig) for v in frame.f_locals.values()):
                reached.add(module)

    with FakeServer() as server:
        config = OptimizeConfig(task="abo_object_counting_synth", method="ape", method_args={"paraphrases": 1},
                                optimizer="openai/fake", optimizer_args={"api_base": server.base_url, "api_key": "x"},
                                optimizer_cache=None, rounds=1, beam=1, train_limit=4, dev_limit=2, test_limit=2,
                                minibatch=2, output=str(tmp_path / "runs"))
        sys.setprofile(trace)
        try:
            outcome = optimize(config, out=lambda line: None, lm=rule_lm())
        finally:
            sys.setprofile(None)
    assert outcome.artifact.is_file(), "the traced run finished"
    assert "lm_eval_abo.run.optimize" in reached and "lm_eval_abo.run.session" in reached
    assert len(reached) <= 6, sorted(reached)


def test_no_test_module_imports_another():
    """What tests share lives in helper modules (conftest.py, fakeserver.py, promptfoo_cli.py, ...): a test module
    imported by another would run its tests' module code twice and tie the two files together."""
    tests = Path(__file__).parent
    test_modules = {p.stem for p in tests.rglob("test_*.py")}
    found = []
    for path in tests.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module] if isinstance(node, ast.ImportFrom) and node.module else []
            found += [f"{path.relative_to(tests)}: {name}" for name in names if name.split(".")[0] in test_modules]
    assert found == []
