"""The import rules of docs/design.md ("may import"), read from the source with ``ast``: every
``import`` statement counts, at module level or inside a function.

- ``ir`` imports none of the stages; ``frontend`` none of ``backend``, ``sim``, ``hw``;
- ``backend`` imports neither ``sim`` nor ``hw`` (the cost model it shares with ``sim`` is in
  ``ir``);
- ``hw`` imports neither ``sim`` nor ``backend``, except its cocotb bench ``hw/tb``, which runs
  programs on the simulator next to the RTL;
- no two modules import each other, directly or through others.
"""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("ir", "frontend", "backend", "sim", "hw", "runtime", "zoo")
#: (modules under this prefix, may not import modules under these prefixes)
FORBIDDEN = [
    ("shiftflow.ir", ("shiftflow.frontend", "shiftflow.backend", "shiftflow.sim", "shiftflow.hw")),
    ("shiftflow.frontend", ("shiftflow.backend", "shiftflow.sim", "shiftflow.hw")),
    ("shiftflow.backend", ("shiftflow.sim", "shiftflow.hw")),
    ("shiftflow.hw", ("shiftflow.sim", "shiftflow.backend")),
]
EXEMPT = ("shiftflow.hw.tb",)


def _modules() -> dict[str, Path]:
    files = [p for p in ROOT.glob("*.py")] + [p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")]
    out = {}
    for path in files:
        parts = path.relative_to(ROOT).with_suffix("").parts
        name = ".".join(("shiftflow",) + (parts[:-1] if parts[-1] == "__init__" else parts))
        out[name] = path
    return out


def _imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The package modules ``name`` imports (``from pkg import mod`` counts as ``pkg.mod``)."""
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    out = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package[:len(package) - node.level + 1] if node.level else []
            base = ".".join(base + ([node.module] if node.module else []))
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
        else:
            continue
        out |= {t for t in targets if t in modules and t != name}
    return out


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(name, path, modules) for name, path in modules.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each sorted."""
    index, low, stack, on_stack, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
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
    return sorted(out)


def test_the_graph_sees_the_packages():
    graph = _graph()
    assert "shiftflow.ir.isa" in graph["shiftflow.hw.job"]
    assert "shiftflow.sim.accelerator" in graph["shiftflow.hw.tb.rtl_accel"]


def test_stages_import_only_what_they_may():
    bad = [f"{m} imports {d}" for m, deps in sorted(_graph().items()) for d in sorted(deps)
           for owner, banned in FORBIDDEN
           if m.startswith(owner + ".") and not m.startswith(EXEMPT) and d.startswith(banned)]
    assert not bad, "\n".join(bad)


def test_no_import_cycles():
    cycles = _cycles(_graph())
    assert not cycles, "import cycles:\n" + "\n".join(" <-> ".join(c) for c in cycles)


def test_cycle_finder():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []
