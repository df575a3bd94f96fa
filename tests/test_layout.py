"""The package's shape: layers along the data flow, imports that only point down, no circle, small modules.

Read from the source with `ast` (nothing is imported), so that it holds whatever is installed.
"""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "taxifare"
# Bottom to top: a module may import its own layer's modules and those of the layers below.
LAYERS = ("core", "rides", "sources", "preprocessing", "model", "registry", "training", "serving", "cli")
MAX_ROOT_MODULES = 8
MAX_LINES = 350


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(path): path for path in PACKAGE.rglob("*.py")}


def _imports(path: Path, known: set[str]) -> set[str]:
    """The taxifare modules `path` imports, at its top or inside functions alike."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("taxifare"):
            submodules = {f"{node.module}.{alias.name}" for alias in node.names} & known
            found |= submodules
            if len(submodules) < len(node.names):  # `from package import module` imports the module, not a name of the package
                found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.startswith("taxifare"))
    return found & known


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(path, set(modules)) - {name} for name, path in modules.items()}


def _layer(module: str) -> int | None:
    """The layer's index; None for the package itself and its entry point (`taxifare`, `__main__`)."""
    parts = module.split(".")
    return LAYERS.index(parts[1]) if len(parts) > 1 and parts[1] in LAYERS else None


def test_every_module_is_in_a_layer():
    loose = [name for name in _modules() if _layer(name) is None and name not in ("taxifare", "taxifare.__main__")]
    assert loose == []


def test_imports_point_down():
    upward = [
        f"{module} -> {imported}"
        for module, imports in _graph().items()
        for imported in imports
        if _layer(module) is not None and _layer(imported) is not None and _layer(imported) > _layer(module)
    ]
    assert upward == []


def test_no_import_circle():
    graph, done, path = _graph(), set(), []

    def visit(module: str) -> None:
        if module in path:
            raise AssertionError("import circle: " + " -> ".join(path[path.index(module):] + [module]))
        if module in done:
            return
        path.append(module)
        for imported in sorted(graph[module]):
            visit(imported)
        path.pop()
        done.add(module)

    for module in sorted(graph):
        visit(module)


def test_root_holds_few_modules_and_no_module_is_long():
    root = sorted(path.name for path in PACKAGE.glob("*.py"))
    assert len(root) <= MAX_ROOT_MODULES, root
    long = {name: n for name, path in _modules().items() if (n := len(path.read_text(encoding="utf-8").splitlines())) > MAX_LINES}
    assert long == {}
