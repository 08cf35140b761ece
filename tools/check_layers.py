"""The import graph of stg_cli: every import of stg's own modules must point to the same or a
lower layer, and the graph of modules must have no cycle.

    python tools/check_layers.py        # exit 1 and one line per violation

Layers, lowest first (a module belongs to the first entry that is a prefix of its name):
"""

from __future__ import annotations

import ast
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "stg_cli"

# lowest first; each entry: a layer name and the module prefixes in it
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    (
        "foundation",
        (
            "stg_cli.errors",
            "stg_cli.defaults",
            "stg_cli.devices",
            "stg_cli.files",
            "stg_cli.lazy",
            "stg_cli.terminal",
            "stg_cli.processes",
            "stg_cli.video_files",
            "stg_cli._C",
        ),
    ),
    ("ops", ("stg_cli.ops",)),
    ("media", ("stg_cli.video", "stg_cli.text")),
    ("encoders", ("stg_cli.backbones",)),
    ("features", ("stg_cli.features", "stg_cli.synth")),
    ("model", ("stg_cli.models",)),
    ("metrics", ("stg_cli.metrics",)),
    ("grounding", ("stg_cli.ground",)),
    ("pictures", ("stg_cli.viz",)),
    ("runs", ("stg_cli.runs",)),
    ("training", ("stg_cli.train",)),
    ("applications", ("stg_cli.demo", "stg_cli.bench", "stg_cli.api", "stg_cli.info")),
    ("command line", ("stg_cli.commands", "stg_cli.cli", "stg_cli.__main__")),
]
__doc__ += (
    "".join(f"\n{index}. {name}: {', '.join(prefixes)}" for index, (name, prefixes) in enumerate(LAYERS))
    + "\n\nThe package's own ``stg_cli/__init__.py`` may import any layer lazily.\n"
)


def layer_of(module: str) -> int | None:
    for index, (_, prefixes) in enumerate(LAYERS):
        if any(module == prefix or module.startswith(prefix + ".") for prefix in prefixes):
            return index
    return None


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(path: Path, module: str, modules: set[str]) -> list[tuple[str, int]]:
    """(imported stg module, line) for every import in the file, at any depth: ``from P import
    M`` imports the module P.M when there is one, else the module P."""
    tree = ast.parse(path.read_text(), str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = []
    for node in _runtime_nodes(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            for alias in node.names:
                submodule = f"{target}.{alias.name}"
                found.append((submodule if submodule in modules else target, node.lineno))
    return [(name, line) for name, line in found if name in modules]


def _runtime_nodes(tree: ast.AST):
    """Every node of ``tree`` except those under ``if TYPE_CHECKING:`` (imports for annotations
    only, never executed)."""
    pending = [tree]
    while pending:
        node = pending.pop()
        yield node
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                pending.extend(child.orelse)
                continue
            pending.append(child)


def main() -> int:
    modules = {module_name(path): path for path in sorted((ROOT / PACKAGE).rglob("*.py"))}
    problems: list[str] = []
    graph: dict[str, set[str]] = defaultdict(set)
    for module, path in modules.items():
        if module == PACKAGE:
            continue
        own = layer_of(module)
        if own is None:
            problems.append(f"{path.relative_to(ROOT)}: {module} is in no layer (add it to LAYERS)")
            continue
        for target, line in imports_of(path, module, set(modules)):
            if target in (PACKAGE, module):
                continue
            graph[module].add(target)
            other = layer_of(target)
            if other is not None and other > own:
                problems.append(
                    f"{path.relative_to(ROOT)}:{line}: {module} ({LAYERS[own][0]}) imports "
                    f"{target} ({LAYERS[other][0]}), a higher layer"
                )
    problems += [f"import cycle: {' -> '.join(cycle)}" for cycle in _cycles(graph)]
    for problem in problems:
        print(problem)
    print(
        f"check_layers: {len(modules)} modules, {sum(map(len, graph.values()))} imports, "
        f"{len(problems)} problem(s)"
    )
    return 1 if problems else 0


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle per strongly connected component of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []
    counter = [0]

    def visit(node: str) -> None:
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for successor in sorted(graph.get(node, ())):
            if successor not in index:
                visit(successor)
                low[node] = min(low[node], low[successor])
            elif successor in on_stack:
                low[node] = min(low[node], index[successor])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    sys.setrecursionlimit(10_000)
    for node in sorted(graph):
        if node not in index:
            visit(node)
    return cycles


if __name__ == "__main__":
    sys.exit(main())
