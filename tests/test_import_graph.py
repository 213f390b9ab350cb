"""The package's import graph: no cycles, no borrowed private names.

Why read the source rather than import it: an import placed inside a function hides a cycle from
Python (the module is already half-initialised when it runs) but not from the design: the two
modules still depend on each other. So every ``import`` statement counts, at module level, inside
functions and under ``if TYPE_CHECKING:``. There is no list of exemptions.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "jepalab"


def modules(root: Path) -> dict[str, tuple[Path, bool]]:
    """Dotted module name -> (file, is_package) for every ``.py`` file under package ``root``."""
    found = {}
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        is_pkg = parts[-1] == "__init__"
        found[".".join(parts[:-1] if is_pkg else parts)] = (path, is_pkg)
    return found


def _absolute(module: str, is_pkg: bool, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    base = module.split(".") if is_pkg else module.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _owner(name: str, mods: dict) -> str | None:
    """The package module that defines dotted ``name`` (``a.b.c`` -> ``a.b`` if ``a.b.c`` is not a module)."""
    while name and name not in mods:
        name = name.rpartition(".")[0]
    return name or None


def import_graph(root: Path) -> tuple[dict[str, set[str]], list[str]]:
    """``(edges, private)``: edges module -> modules it imports (within the package), and one line
    per import of another module's private (``_name``) attribute, by ``from m import _x`` or by
    ``m._x`` on an imported module ``m``."""
    mods = modules(root)
    top = root.name
    edges: dict[str, set[str]] = {m: set() for m in mods}
    private: list[str] = []
    for mod, (path, is_pkg) in mods.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        aliases: dict[str, str] = {}  # local name -> package module it is bound to
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for a in node.names:
                    if a.name == top or a.name.startswith(top + "."):
                        target = _owner(a.name, mods)
                        edges[mod].add(target)
                        if a.asname:
                            aliases[a.asname] = target
            elif isinstance(node, ast.ImportFrom):
                base = _absolute(mod, is_pkg, node)
                if not (base == top or base.startswith(top + ".")):
                    continue
                for a in node.names:
                    sub = f"{base}.{a.name}"
                    if sub in mods:  # "from pkg import submodule"
                        edges[mod].add(sub)
                        aliases[a.asname or a.name] = sub
                        continue
                    owner = _owner(base, mods)
                    edges[mod].add(owner)
                    if a.name.startswith("_") and not a.name.startswith("__"):
                        private.append(f"{mod}:{node.lineno} imports {owner}.{a.name}")
        for node in ast.walk(tree):
            if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                    and node.value.id in aliases and aliases[node.value.id] != mod
                    and node.attr.startswith("_") and not node.attr.startswith("__")):
                private.append(f"{mod}:{node.lineno} uses {aliases[node.value.id]}.{node.attr}")
    for mod in edges:
        edges[mod].discard(mod)
    return edges, private


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return out


def _describe(comp: list[str], edges: dict[str, set[str]]) -> str:
    inside = set(comp)
    return "; ".join(f"{m} -> {', '.join(sorted(edges[m] & inside))}" for m in comp)


def test_jepalab_import_graph_has_no_cycle() -> None:
    edges, _ = import_graph(PACKAGE)
    found = cycles(edges)
    assert not found, "import cycles in jepalab/ (move the shared code one floor down):\n" + "\n".join(
        _describe(c, edges) for c in found)


def test_no_module_imports_another_modules_private_names() -> None:
    _, private = import_graph(PACKAGE)
    assert not private, "private names used across modules (make them public or move them):\n" + "\n".join(private)


def test_the_graph_sees_function_level_and_relative_imports(tmp_path: Path) -> None:
    """The checker itself: a cycle closed by an import inside a function, a relative import and a
    private name taken from a sibling are all found (a reader that missed them would pass anything)."""
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("from .b import thing\n")
    (pkg / "a.py").write_text("from pkg.sub import b\n\n\ndef f():\n    return b._hidden\n")
    (pkg / "sub" / "b.py").write_text("def thing():\n    from ..a import f\n    return f\n\n_hidden = 1\n")
    (pkg / "c.py").write_text("from pkg.sub.b import _hidden, thing\n")
    edges, private = import_graph(pkg)
    assert edges["pkg.a"] == {"pkg.sub.b"} and edges["pkg.sub"] == {"pkg.sub.b"}
    assert cycles(edges) == [["pkg.a", "pkg.sub.b"]]
    assert sorted(private) == ["pkg.a:5 uses pkg.sub.b._hidden", "pkg.c:1 imports pkg.sub.b._hidden"]


def test_the_graph_covers_the_package() -> None:
    """Every module is read and the layering edges are there: assembly above parts, never back."""
    edges, _ = import_graph(PACKAGE)
    assert len(edges) > 50
    assert {"jepalab.data", "jepalab.recipes", "jepalab.train", "jepalab.schema"} <= edges["jepalab.config"]
    assert "jepalab.config" in edges["jepalab.experiment"]
    for part in ("jepalab.recipes.base", "jepalab.data", "jepalab.schema", "jepalab.trainer.config"):
        assert not edges[part] & {"jepalab.config", "jepalab.experiment"}, part
    assert edges["jepalab.schema"] == {"jepalab.errors"}
