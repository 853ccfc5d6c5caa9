"""Shape rules of the source, checked on its text (no imports executed): no import circle, and no function
over 8 parameters except where the parameters are an outside contract (numba kernels' flat arrays, the
constructors the YAML ``kwargs`` of the originals' configs are checked against)."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("common", "formats", "config", "evaluation", "structures", "datasets", "models", "engine", "detect",
            "tools", "benchmarks")
MAX_PARAMETERS = 8
# Constructors whose keyword arguments ARE the ``model.*.kwargs`` of the originals' YAML configs: the
# config is checked against their signatures (config.construct), so a struct would break those configs.
CONFIG_KWARGS_CONSTRUCTORS = {
    "models/backbones/vit.py": {"__init__"},
    "models/heads/acar.py": {"__init__"},
}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _sources() -> dict[str, Path]:
    files = [path for pkg in PACKAGES for path in (ROOT / pkg).rglob("*.py")]
    files += [ROOT / "main.py", ROOT / "calc_mAP.py"]
    return {_module_name(path): path for path in sorted(files)}


def _imports(path: Path, module: str, known: set[str]) -> set[str]:
    """Project modules ``module`` imports anywhere in its file, ``importlib.import_module("x")`` included."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            names = [f"{base}.{alias.name}" for alias in node.names] + [base]
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
              and node.func.attr == "import_module" and node.args and isinstance(node.args[0], ast.Constant)):
            names = [str(node.args[0].value)]
        for name in names:
            while name and name not in known:
                name = name.rpartition(".")[0]
            if name and name != module:
                found.add(name)
    return found


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
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
        for child in graph[node]:
            if child not in index:
                visit(child)
                low[node] = min(low[node], low[child])
            elif child in on_stack:
                low[node] = min(low[node], index[child])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in graph:
        if node not in index:
            visit(node)
    return found


def test_no_import_circle() -> None:
    sources = _sources()
    known = set(sources)
    # A package's __init__ re-exporting its own modules is how a package is assembled, not a circle.
    graph = {module: {target for target in _imports(path, module, known)
                      if not (path.name == "__init__.py" and target.startswith(module + "."))}
             for module, path in sources.items()}
    assert _cycles(graph) == []


def test_the_circle_finder_finds_a_circle() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def _is_numba_kernel(node: ast.FunctionDef) -> bool:
    return any("numba" in ast.unparse(decorator) or "njit" in ast.unparse(decorator)
               for decorator in node.decorator_list)


def _parameter_count(node: ast.FunctionDef) -> int:
    names = [arg.arg for arg in (*node.args.posonlyargs, *node.args.args, *node.args.kwonlyargs)]
    return len(names[1:] if names and names[0] in ("self", "cls") else names)


@pytest.mark.parametrize("path", sorted(_sources().values()), ids=lambda path: str(path.relative_to(ROOT)))
def test_no_function_over_eight_parameters(path: Path) -> None:
    rel = path.relative_to(ROOT).as_posix()
    allowed = CONFIG_KWARGS_CONSTRUCTORS.get(rel, set())
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    long = [f"{node.name} (line {node.lineno}): {_parameter_count(node)} parameters"
            for node in ast.walk(tree) if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
            and _parameter_count(node) > MAX_PARAMETERS and not _is_numba_kernel(node) and node.name not in allowed]
    assert not long, f"{rel}: pass a struct instead: {long}"
