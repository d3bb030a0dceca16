"""The package's layers point one way, and no module imports itself back through others.

Layers from the bottom (a module may import only modules of its own layer or of layers below):
lazy (PEP 562 exports) < vocab (the torch-free parameter vocabulary) < utils < models < data < features < eval < analysis < viz < training < workbook < cli, with the
package's ``__init__.py`` and ``__main__.py`` on top (they re-export and dispatch). Imports are read
with ``ast`` from the source, so an import inside a function counts as much as one at the top; the
cycle search runs on the module-level imports (a function-level import is what breaks a cycle at
import time, but the layer rule still holds for it).
"""
from __future__ import annotations

import ast
from pathlib import Path
from typing import Dict, List, Optional, Set, Tuple

import pytest

PKG = "unirepclip"
ROOT = Path(__file__).resolve().parents[1] / "lib" / PKG
LAYERS = ["lazy", "vocab", "utils", "models", "data", "features", "eval", "analysis", "viz", "training",
          "workbook", "cli"]
TOP = len(LAYERS)  # the package's __init__ / __main__
# What the package root defines itself, before it imports anything: reading it from below is no
# upward dependency (the root is always initialized first).
ROOT_ATTRIBUTES = {"__version__"}


def module_name(path: Path, root: Path = ROOT) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join([PKG] + parts)


def layer_of(module: str) -> int:
    """Index in LAYERS; TOP for the package itself and its ``__main__``."""
    parts = module.split(".")
    if len(parts) == 1 or parts[1] == "__main__":
        return TOP
    if parts[1] not in LAYERS:
        raise ValueError(f"{module}: {parts[1]!r} is in no layer; add it to LAYERS in {__file__}")
    return LAYERS.index(parts[1])


def _resolve(module: str, is_package: bool, node: ast.ImportFrom) -> Optional[str]:
    if node.level == 0:
        return node.module
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[:len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def imports_of(source: str, module: str, is_package: bool, known: Set[str]
               ) -> List[Tuple[str, int, bool]]:
    """``(imported unirepclip module, line, at module level)`` for every import in ``source``.

    ``from unirepclip.x import y`` names the module ``unirepclip.x.y`` when that is a module, else
    ``unirepclip.x``.
    """
    tree = ast.parse(source)
    top_level = {id(n) for n in tree.body}
    # module-level also covers imports under a top-level `if`/`try` (e.g. TYPE_CHECKING guards)
    for n in tree.body:
        if isinstance(n, (ast.If, ast.Try)):
            top_level |= {id(c) for c in ast.walk(n)}
    out = set()
    for node in ast.walk(tree):
        targets = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = _resolve(module, is_package, node)
            if base is None or (base == PKG and all(a.name in ROOT_ATTRIBUTES for a in node.names)):
                continue
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base
                       for a in node.names]
        for t in targets:
            if t == PKG or t.startswith(PKG + "."):
                while t not in known and "." in t:  # `import unirepclip.x.Class`-like spellings
                    t = t.rsplit(".", 1)[0]
                out.add((t, node.lineno, id(node) in top_level))
    return sorted(out)


def import_graph(root: Path = ROOT) -> Dict[str, List[Tuple[str, int, bool]]]:
    files = {module_name(p, root): p for p in sorted(root.rglob("*.py"))}
    known = set(files)
    return {m: imports_of(p.read_text(), m, p.name == "__init__.py", known)
            for m, p in files.items()}


def _layer_name(module: str) -> str:
    return LAYERS[layer_of(module)] if layer_of(module) < TOP else "top"


def layer_violations(graph) -> List[str]:
    out = []
    for m, imps in graph.items():
        for target, line, _ in imps:
            if layer_of(target) > layer_of(m):
                out.append(f"{m}:{line} imports {target} ({_layer_name(m)} < {_layer_name(target)})")
    return out


def find_cycles(edges: Dict[str, Set[str]]) -> List[List[str]]:
    """The strongly connected components with more than one module (or a self-import), by
    Tarjan's algorithm; each is reported as a sorted list."""
    index: Dict[str, int] = {}
    low: Dict[str, int] = {}
    stack: List[str] = []
    on: Set[str] = set()
    out: List[List[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1 or v in edges.get(v, ()):
                out.append(sorted(comp))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return out


def module_level_edges(graph) -> Dict[str, Set[str]]:
    """Module-level imports between modules. A package's ``__init__`` that a submodule imports
    through is not an edge back: importing ``unirepclip.models.x`` runs ``unirepclip.models``
    first, which Python handles, so only the named module counts."""
    return {m: {t for t, _, top in imps if top and t != m} for m, imps in graph.items()}


def test_every_module_is_in_a_layer():
    graph = import_graph()
    assert len(graph) > 20, sorted(graph)  # the walk found the package
    for m in graph:
        layer_of(m)


def test_no_import_from_a_higher_layer():
    violations = layer_violations(import_graph())
    assert violations == [], "imports against the layers:\n" + "\n".join(violations)


def test_no_import_cycle():
    cycles = find_cycles(module_level_edges(import_graph()))
    assert cycles == [], f"import cycles between modules: {cycles}"


# The checks themselves, on hand-made sources: each one must see what it is meant to see.

def _tree(tmp_path: Path, files: Dict[str, str]) -> Path:
    root = tmp_path / PKG
    for rel, text in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    return root


def test_the_checks_see_relative_absolute_and_function_level_imports(tmp_path):
    root = _tree(tmp_path, {
        "__init__.py": "from .models import build\n",
        "utils.py": "def f():\n    from unirepclip.eval import metrics\n",  # function level
        "models/__init__.py": "from .factory import build\n",
        "models/factory.py": "from ..data.sets import resolve\n",  # relative, upward
        "data/__init__.py": "",
        "data/sets.py": "import unirepclip.models.factory\n",  # absolute, downward
        "eval/__init__.py": "",
        "eval/metrics.py": "from unirepclip import utils\n",
        "eval/probe.py": "from unirepclip import __version__\nfrom unirepclip import build\n",
    })
    graph = import_graph(root)
    assert ("unirepclip.eval.metrics", 2, False) in graph["unirepclip.utils"]
    assert ("unirepclip.data.sets", 1, True) in graph["unirepclip.models.factory"]
    assert ("unirepclip.utils", 1, True) in graph["unirepclip.eval.metrics"]
    assert sorted(layer_violations(graph)) == [
        "unirepclip.eval.probe:2 imports unirepclip (eval < top)",
        "unirepclip.models.factory:1 imports unirepclip.data.sets (models < data)",
        "unirepclip.utils:2 imports unirepclip.eval.metrics (utils < eval)"]
    assert find_cycles(module_level_edges(graph)) == [
        ["unirepclip.data.sets", "unirepclip.models.factory"]]


def test_a_function_level_import_breaks_no_cycle_but_a_self_import_is_one(tmp_path):
    root = _tree(tmp_path, {
        "__init__.py": "",
        "models/__init__.py": "",
        "models/a.py": "from . import b\n",
        "models/b.py": "def f():\n    from . import a\n",
        "models/c.py": "import unirepclip.models.c\n",
    })
    graph = import_graph(root)
    assert layer_violations(graph) == []
    assert find_cycles(module_level_edges(graph)) == []  # a -> b at import time only
    assert find_cycles({"x": {"x"}}) == [["x"]]
    assert find_cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_a_module_outside_the_layers_is_named(tmp_path):
    with pytest.raises(ValueError, match="'plugins' is in no layer"):
        layer_of("unirepclip.plugins.x")


# -- the workbook layer stays small enough to find one's way in (issue 22) --------------------------

MAX_MODULE_LINES, MAX_FUNCTION_LINES, MAX_PARAMETERS = 400, 60, 8


def shape_problems(root: Path) -> List[str]:
    """Modules over :data:`MAX_MODULE_LINES`, functions over :data:`MAX_FUNCTION_LINES` lines or
    :data:`MAX_PARAMETERS` parameters (self/cls aside, ``*args``/``**kw`` counted), and imports of
    another module's ``_private`` names, under ``root``."""
    problems = []
    for path in sorted(root.rglob("*.py")):
        src = path.read_text()
        rel = path.relative_to(root.parent)
        if len(src.splitlines()) > MAX_MODULE_LINES:
            problems.append(f"{rel}: {len(src.splitlines())} lines")
        for node in ast.walk(ast.parse(src)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                a = node.args
                names = [x.arg for x in a.posonlyargs + a.args + a.kwonlyargs]
                n = len([x for x in names if x not in ("self", "cls")])
                n += (a.vararg is not None) + (a.kwarg is not None)
                lines = node.end_lineno - node.lineno + 1
                if n > MAX_PARAMETERS or lines > MAX_FUNCTION_LINES:
                    problems.append(f"{rel}:{node.lineno} {node.name}: {n} parameters, "
                                    f"{lines} lines")
            if isinstance(node, ast.ImportFrom) and (node.level or (node.module or "").startswith(
                    PKG)):
                problems += [f"{rel}:{node.lineno} imports {node.module}.{al.name}"
                             for al in node.names if al.name.startswith("_")
                             and not al.name.startswith("__")]
    return problems


def test_the_workbook_layer_has_small_modules_short_functions_and_no_private_imports():
    assert shape_problems(ROOT / "workbook") == []


def test_the_shape_check_sees_a_long_function_many_parameters_and_a_private_import(tmp_path):
    pkg = tmp_path / "workbook"
    pkg.mkdir()
    body = "\n".join(f"    x{i} = {i}" for i in range(60))
    (pkg / "a.py").write_text(f"def long():\n{body}\n\n\ndef wide(a, b, c, d, e, f, g, h, *rest):"
                              "\n    pass\n\n\ndef ok(self, a, b, c, d, e, f, g, h):\n    pass\n"
                              "from unirepclip.workbook.run.engine import _private_folder\n")
    got = shape_problems(pkg)
    assert len(got) == 3, got
    assert "long: 0 parameters, 61 lines" in got[0] and "wide: 9 parameters" in got[1]
    assert "imports unirepclip.workbook.run.engine._private_folder" in got[2]
