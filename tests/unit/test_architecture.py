"""The shape of the code, checked from its imports (ast, nothing imported): issue 14's one composition root.

What counts as an import:
- Module-level imports (including those inside `try`/`if` at module level) form the import graph; no module
  may import one that imports it back, directly or through others.
- Imports under `if TYPE_CHECKING:` never run: they count for nothing here.
- Imports inside functions are deliberate late imports (a command loads its dependencies when it runs; the
  broker transport loads metrics after they are set up): they are not edges of the cycle check, since they
  cannot make a half-initialised module visible at import time. They do count for the layering rules below
  (`worker` never imports `producers`; who may import the settings), which hold wherever an import stands.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("worker", "producers")

SETTINGS_LEAVES = frozenset({"worker.errors", "worker.queues", "worker.bucket_names", "worker.webhook_format"})
"""The only worker modules worker/settings.py may import; each imports nothing from worker itself."""

SETTINGS_USERS = frozenset({
    "worker.composition",  # builds every object from settings
    "worker.celery_app", "worker.worker_app",  # the Celery app: configuration, and the worker processes' app
})
"""Modules (besides the CLI) that may import worker.settings to turn settings into objects."""
CLI_PACKAGES = ("worker.commands", "producers.commands")
PRODUCER_ENTRY_POINTS = frozenset({
    "producers.cli",
    "producers.client", "producers.async_client",  # the SDK: `ModerationClient(settings=...)`, public API
    "producers.api.app", "producers.api.serving",  # `create_app(settings)`, `llavaguard api`
    "producers.bulk.audit",  # `run_audit(settings, options)`, called by `llavaguard audit`
})
"""Producers' public entry points take (or read) a Settings like the CLI does; they build workers' objects
through worker.composition."""


@dataclass(frozen=True)
class Import:
    source: str
    target: str
    module_level: bool


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for package in PACKAGES for p in sorted((ROOT / package).rglob("*.py"))}


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _walk(node: ast.AST, in_function: bool) -> Iterator[tuple[ast.Import | ast.ImportFrom, bool]]:
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.If) and _is_type_checking(child):
            for other in child.orelse:
                yield from _walk(other, in_function)
            continue
        if isinstance(child, ast.Import | ast.ImportFrom):
            yield child, in_function
        nested = in_function or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda)
        yield from _walk(child, nested)


def imports_of(name: str, path: Path, known: set[str]) -> list[Import]:
    """The worker/producers modules `name` imports: `from pkg import mod` names the module `pkg.mod`."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: list[Import] = []
    for node, in_function in _walk(ast.parse(path.read_text(), str(path)), False):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        else:
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
        found += [Import(name, t, not in_function) for t in dict.fromkeys(targets) if t.split(".")[0] in PACKAGES]
    return found


def all_imports() -> list[Import]:
    found = modules()
    return [imp for name, path in found.items() for imp in imports_of(name, path, set(found))]


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(edges.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


def test_the_modules_are_found() -> None:
    found = modules()
    assert {"worker.settings", "worker.composition", "worker.tasks", "producers.client"} <= set(found)
    assert len(found) > 100


def test_no_module_imports_one_that_imports_it_back() -> None:
    edges: dict[str, set[str]] = {}
    for imp in all_imports():
        if imp.module_level and imp.source != imp.target:
            edges.setdefault(imp.source, set()).add(imp.target)
    assert cycles(edges) == []


def test_worker_never_imports_producers() -> None:
    offending = sorted(f"{i.source} -> {i.target}" for i in all_imports()
                       if i.source.split(".")[0] == "worker" and i.target.split(".")[0] == "producers")
    assert offending == []


def test_settings_import_only_leaf_modules() -> None:
    imports = all_imports()
    of_settings = {i.target for i in imports if i.source == "worker.settings"}
    assert of_settings <= SETTINGS_LEAVES
    leaves_importing_worker = sorted(f"{i.source} -> {i.target}" for i in imports if i.source in SETTINGS_LEAVES)
    assert leaves_importing_worker == []


def test_only_the_composition_root_the_app_and_entry_points_import_the_settings() -> None:
    allowed = SETTINGS_USERS | PRODUCER_ENTRY_POINTS
    users = sorted({i.source for i in all_imports() if i.target == "worker.settings"
                    and i.source not in allowed and not i.source.startswith(CLI_PACKAGES)})
    assert users == []


def test_no_class_or_function_outside_them_takes_a_settings() -> None:
    allowed = SETTINGS_USERS | PRODUCER_ENTRY_POINTS | {"worker.settings"}
    offending = []
    for name, path in modules().items():
        if name in allowed or name.startswith(CLI_PACKAGES):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.arg) and node.annotation is not None and "Settings" in ast.unparse(node.annotation):
                offending.append(f"{name}:{node.lineno} {node.arg}")
    assert offending == []


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_the_cli_root_loads_no_metrics_before_the_worker_command_runs() -> None:
    """`llavaguard worker` sets PROMETHEUS_MULTIPROC_DIR before the metrics are first imported; an eager import
    anywhere under producers.cli (e.g. of worker.composition) would lose the prefork children's metrics."""
    code = "import sys, producers.cli; print(sorted(m for m in sys.modules if m.startswith('prometheus_client')))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert done.stdout.strip() == "[]"
