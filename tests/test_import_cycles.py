"""No import cycles inside edge_attn: the module import graph, read from the source with ``ast``, is acyclic.

What counts as an edge (module A imports module B):
- every ``import`` statement anywhere in A's file, function-level ("lazy") imports included. A lazy import
  only hides a cycle from Python's loader, not from a reader: A still depends on B, and a pair of modules
  that need each other is one concept split in two or a helper living in the wrong module.
- ``import a.b.c`` is an edge to ``a.b.c``; ``from P import n`` is an edge to ``P.n`` when ``n`` is a submodule
  of package ``P``, else to ``P`` (the module that defines ``n``). Relative imports are resolved.
- Not counted: the implicit import of a module's parent packages (every submodule would "depend" on its
  package's ``__init__``, which re-exports it), and modules outside edge_attn.
"""

import ast
import pathlib

import pytest

PACKAGE_ROOT = pathlib.Path(__file__).resolve().parents[1] / "edge_attn"


def module_files(root=PACKAGE_ROOT):
    """{dotted module name: path} for every .py file of the package below ``root``."""
    modules = {}
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = path
    return modules


def imported_modules(name, path, modules):
    """The edge_attn modules that module ``name`` (source at ``path``) imports, by the rules above."""
    is_package = path.name == "__init__.py"
    package = name if is_package else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - (node.level - 1)]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module
            for alias in node.names:
                submodule = f"{source}.{alias.name}"
                found.add(submodule if submodule in modules else source)
    return {target for target in found if target in modules and target != name}


def import_graph(root=PACKAGE_ROOT):
    modules = module_files(root)
    return {name: imported_modules(name, path, modules) for name, path in modules.items()}


def find_cycles(graph):
    """Every strongly connected component of more than one module (Tarjan), each as a sorted list; plus one
    concrete cycle path per component so a failure says which imports to cut."""
    index, low, on_stack, stack, components = {}, {}, set(), [], []
    counter = [0]

    def visit(node):
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return [(component, _one_cycle(graph, component)) for component in components]


def _one_cycle(graph, component):
    """A shortest cycle through the component's first module, as ``a -> b -> a``."""
    members, start = set(component), component[0]
    paths, seen = [[start]], {start}
    while paths:
        path = paths.pop(0)
        for target in sorted(graph[path[-1]] & members):
            if target == start:
                return " -> ".join(path + [start])
            if target not in seen:
                seen.add(target)
                paths.append(path + [target])
    return ""


def test_the_walker_sees_function_level_relative_and_submodule_imports(tmp_path):
    """The rules above on a small package of known cycles (so the real test below can fail)."""
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("def f():\n    from pkg import b\n")  # lazy, by submodule name
    (pkg / "b.py").write_text("from .sub.c import thing\n")  # relative, by name defined in c
    (pkg / "sub" / "__init__.py").write_text("from pkg.sub.c import thing\n")  # re-export: not a cycle
    (pkg / "sub" / "c.py").write_text("import pkg.a\nthing = 1\n")
    (pkg / "d.py").write_text("import pkg.sub\n")  # the package itself: no edge to its modules
    graph = import_graph(pkg)
    assert graph == {"pkg": set(), "pkg.a": {"pkg.b"}, "pkg.b": {"pkg.sub.c"}, "pkg.sub": {"pkg.sub.c"},
                     "pkg.sub.c": {"pkg.a"}, "pkg.d": {"pkg.sub"}}
    assert find_cycles(graph) == [(["pkg.a", "pkg.b", "pkg.sub.c"], "pkg.a -> pkg.b -> pkg.sub.c -> pkg.a")]


def test_edge_attn_has_no_import_cycles():
    graph = import_graph()
    assert len(graph) > 50 and graph["edge_attn.cli"], "the walker found no modules or no imports"
    cycles = find_cycles(graph)
    if cycles:
        pytest.fail("import cycles in edge_attn (lazy imports count; see this file's docstring):\n"
                    + "\n".join(f"  {path}   (component: {', '.join(component)})" for component, path in cycles))
