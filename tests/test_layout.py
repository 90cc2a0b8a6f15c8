"""The package's import graph: no cycles, and every module imports only from its own layer or below.

The graph is read from the source (every ``import`` of an ``auxopt`` module, at the top of a module or
inside a function; imports under ``if TYPE_CHECKING:`` are annotations, not data flow, and are left
out). ``LAYERS`` is the data flow, bottom first; it is the layout in ``../shared/DESIGN.md``.
"""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "auxopt"

LAYERS: list[tuple[str, ...]] = [
    ("auxopt.errors", "auxopt.version"),  # AuxoptError; the version
    ("auxopt.records", "auxopt._optuna", "auxopt.bandit", "auxopt.stats"),  # record names, Optuna's private API,
    # bandit maths, paired statistics
    ("auxopt.tasks",),  # data
    ("auxopt.models",),  # encoders, heads, losses, precision
    ("auxopt.train",),  # the loop and its plugin protocol
    ("auxopt.grad", "auxopt.objectives"),  # ATTITTUD and AANG: plugins of the loop, usable alone
    ("auxopt.samplers", "auxopt.pruners", "auxopt.storage", "auxopt.progress"),  # samplers, pruners; storage; bars
    ("auxopt.propose", "auxopt.plots"),  # distinct proposals; figures from stored trials
    ("auxopt.objective", "auxopt.worker", "auxopt.dashboard"),  # Optuna meets training; workers
    ("auxopt.study", "auxopt.integrations"),  # StudySpec; transformers.Trainer
    ("auxopt.pipelines",),  # AutoSeM's two stages, built of studies
    ("auxopt.outcome",),  # a search's result: the chosen model exported, the verdict on it
    ("auxopt.study_file",),  # a file that defines a study or a pipeline
    ("auxopt.cli",),
]


def _modules() -> dict[str, Path]:
    out = {}
    for path in ROOT.rglob("*.py"):
        parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def _type_checking_lines(tree: ast.AST) -> set[int]:
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.body:
                lines.update(range(child.lineno, (child.end_lineno or child.lineno) + 1))
    return lines


def import_graph(annotations: bool = False) -> dict[str, set[str]]:
    """module → the auxopt modules it imports (a submodule import counts as the submodule); with
    ``annotations``, the imports under ``if TYPE_CHECKING:`` too."""
    modules = _modules()
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        tree = ast.parse(path.read_text())
        skip = set() if annotations else _type_checking_lines(tree)
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        targets: set[str] = set()
        for node in ast.walk(tree):
            if not isinstance(node, ast.Import | ast.ImportFrom) or node.lineno in skip:
                continue
            if isinstance(node, ast.Import):
                found = [a.name for a in node.names]
            else:
                base = node.module or ""
                if node.level:
                    up = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                    base = ".".join(up + ([node.module] if node.module else []))
                # ``from pkg import mod`` imports the module; ``from pkg import name`` the package
                found = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
            for target in found:
                if target.split(".")[0] != "auxopt":
                    continue
                while target not in modules:
                    target = target.rpartition(".")[0]
                if target != name:
                    targets.add(target)
        graph[name] = targets
    return graph


def _layer(module: str) -> tuple[int, str]:
    for i, layer in enumerate(LAYERS):
        for unit in layer:
            if module == unit or module.startswith(unit + "."):
                return i, unit
    raise AssertionError(f"{module} is in no layer of tests/test_layout.py: add it where it belongs")


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_no_import_cycles():
    graph = import_graph()
    # a package's __init__ re-exports its modules; a module importing its own package's __init__
    # would tie them in a knot, so those edges count too
    assert _cycles(graph) == []


def test_no_two_modules_import_each_other_not_even_for_annotations():
    """A module that a lower one names in its annotations knows the lower one's reader: the lower
    one describes what it takes in words (``Any``) instead, so that each pair reads one way."""
    graph = import_graph(annotations=True)
    pairs = sorted({tuple(sorted((a, b))) for a in graph for b in graph[a] if a in graph.get(b, ())})
    # a package's __init__ re-exports its modules, which may import names from the package: not a pair
    pairs = [(a, b) for a, b in pairs if not (b.startswith(a + ".") or a.startswith(b + "."))]
    assert pairs == []


#: the most lines a module may have: past it, it holds more than one thing; split it along its seams
MAX_LINES = 450


def test_no_module_is_longer_than_the_limit():
    long = {name: n for name, path in _modules().items() if (n := len(path.read_text().splitlines())) > MAX_LINES}
    assert long == {}, f"modules over {MAX_LINES} lines: {long}"


def test_every_module_imports_only_its_layer_or_below():
    graph = import_graph()
    wrong = []
    for module, targets in sorted(graph.items()):
        if module == "auxopt":  # the top-level namespace re-exports the public API
            continue
        layer, unit = _layer(module)
        for target in sorted(targets):
            if target == "auxopt":  # the public namespace (auxopt/__init__.py) sits above every layer
                if layer != len(LAYERS) - 1:
                    wrong.append(f"{module} imports the top-level auxopt namespace")
                continue
            other, other_unit = _layer(target)
            if other > layer or (other == layer and other_unit != unit):
                wrong.append(f"{module} (layer {layer}) imports {target} (layer {other})")
    assert wrong == []


def test_the_graph_sees_imports_inside_functions():
    graph = import_graph()
    assert "auxopt.worker" in graph["auxopt.study"]  # StudySpec.optimize imports it lazily
    assert "auxopt.train.step" not in graph["auxopt.train.config"]  # only under TYPE_CHECKING


def test_the_code_is_linted_and_formatted():
    ruff = shutil.which("ruff", path=str(Path(sys.executable).parent)) or shutil.which("ruff")
    if ruff is None:
        pytest.skip("ruff is not installed (pip install -e '.[dev]')")
    folders = ["auxopt", "tests", "benchmarks", "studies", "examples", "optunahub-registry", "docs"]
    repo = ROOT.parent
    for command in ([ruff, "check", *folders], [ruff, "format", "--check", *folders]):
        done = subprocess.run(command, cwd=repo, capture_output=True, text=True)
        assert done.returncode == 0, f"{' '.join(command[1:3])}:\n{done.stdout}{done.stderr}"
