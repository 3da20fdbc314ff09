"""Structure of the runners' shared core: the files copied onto a board stay self-contained, and no
runner module reaches into another module's private names."""

import ast
import os
import sys

import edge_attn

PACKAGE = os.path.dirname(edge_attn.__file__)
BOARD_FILES = ("runners/timing.py", "runners/machine.py", "runners/remote_bench.py")
OWNED = [os.path.join("runners", f) for f in os.listdir(os.path.join(PACKAGE, "runners")) if f.endswith(".py")] + \
    ["bench.py", "devices.py", "pytest_plugin.py", os.path.join("evaluate", "latency.py")]


def imports(path, skip_package_guard=False):
    """(module, names) of every import in the file; with ``skip_package_guard``, not those under
    ``if __package__:`` (the host-side branch of the board script)."""
    tree = ast.parse(open(os.path.join(PACKAGE, path), encoding="utf-8").read())
    guarded = set()
    if skip_package_guard:
        for node in ast.walk(tree):
            if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "__package__":
                guarded.update(id(child) for stmt in node.body for child in ast.walk(stmt))
    found = []
    for node in ast.walk(tree):
        if id(node) in guarded:
            continue
        if isinstance(node, ast.Import):
            found += [(alias.name, ()) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            found.append((node.module or "", tuple(alias.name for alias in node.names)))
    return found


def test_board_files_need_only_the_standard_library_numpy_and_litert():
    allowed = set(sys.stdlib_module_names) | {"numpy", "ai_edge_litert", "tflite_runtime", "machine", "timing",
                                               "_compat"}
    for path in BOARD_FILES:
        for module, _ in imports(path, skip_package_guard=True):
            assert module.split(".")[0] in allowed, f"{path} imports {module}: the board has no edge_attn"


def test_the_compat_module_loads_on_a_board_and_what_the_board_calls_imports_nothing():
    """``_compat`` goes to the board too: at module level it may import only the standard library (each
    function imports what it reads), and the one function the board script calls imports nothing."""
    tree = ast.parse(open(os.path.join(PACKAGE, "_compat.py"), encoding="utf-8").read())
    for node in tree.body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            modules = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module]
            assert all(m.split(".")[0] in sys.stdlib_module_names for m in modules), ast.unparse(node)
    board_calls = {n.attr for n in ast.walk(ast.parse(open(os.path.join(PACKAGE, "runners/remote_bench.py")).read()))
                   if isinstance(n, ast.Attribute) and isinstance(n.value, ast.Name) and n.value.id == "_compat"}
    assert board_calls == {"interpreter_ops"}
    function = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "interpreter_ops")
    assert not [n for n in ast.walk(function) if isinstance(n, (ast.Import, ast.ImportFrom))]


def test_no_private_names_imported_across_modules():
    for path in OWNED:
        for module, names in imports(path):
            private = [name for name in names if name.startswith("_")]
            assert not private, f"{path} imports private {private} from {module}"
