"""The package's structure: the layering written in its docstring holds, there is no import circle, package modules
are imported at module level outside the CLI, and no code outside the motion factory asks which head it runs."""

import ast
import re
from pathlib import Path

import worldfromblur

PACKAGE = Path(worldfromblur.__file__).parent
LAYERS = {"errors": 0, "shipped": 0, "devices": 1, "imaging": 1, "geometry": 2, "viz": 3, "losses": 3, "pose_solve": 3,
          "checkpoint": 3, "data": 4, "models": 5, "reconstruct": 6, "evaluation": 7, "training": 8, "cli": 9}


def modules():
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        package = name if parts[-1] == "__init__" else name.rsplit(".", 1)[0]
        yield path, name, package, ast.parse(path.read_text())


def imports(tree, package):
    """(imported module, line, inside a function) of every import of a package module."""
    in_function = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            in_function |= {id(n) for n in ast.walk(node)} - {id(node)}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = package.split(".")[: len(package.split(".")) - node.level + 1]
            targets = [".".join(base + [node.module])] if node.module else [".".join(base + [a.name]) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("worldfromblur"):
            targets = [node.module]
        elif isinstance(node, ast.Import):
            targets = [a.name for a in node.names if a.name.startswith("worldfromblur")]
        else:
            continue
        for t in targets:
            yield t, node.lineno, id(node) in in_function


def top(name):
    parts = name.split(".")
    return parts[1] if len(parts) > 1 else ""


def test_the_layering_holds_and_every_part_has_a_layer():
    tops = {top(name) for _, name, _, _ in modules()} - {"", "configs", "recipes", "weights"}  # data, not code
    assert tops == set(LAYERS), "a new top-level module needs a layer here and in the package docstring"
    doc = worldfromblur.__doc__
    assert all(f"``{m}``" in doc for m in LAYERS)
    upward = []
    for path, name, package, tree in modules():
        for target, line, _ in imports(tree, package):
            src, dst = top(name), top(target)
            if dst == "__version__":  # the root package's version string
                continue
            if src and dst and src != dst and LAYERS[dst] >= LAYERS[src]:
                upward.append(f"{path.relative_to(PACKAGE)}:{line} imports {target}")
    assert not upward, upward


def test_no_import_circle():
    names = {name for _, name, _, _ in modules()}

    def resolve(t):
        while t and t not in names:
            t = t.rpartition(".")[0]
        return t

    graph = {name: {resolve(t) for t, _, _ in imports(tree, package)} - {"", name} for _, name, package, tree in modules()}
    # the package's __init__ files re-export their modules: an edge into a package means its __init__
    state, cycle = {}, []

    def visit(n, stack):
        state[n] = 1
        for m in graph.get(n, ()):
            if m.startswith(n + "."):  # a package importing its own modules is not a circle
                continue
            if state.get(m) == 1 and not n.startswith(m + "."):
                cycle.append(stack[stack.index(m):] + [m] if m in stack else [n, m])
            elif m not in state:
                visit(m, stack + [m])
        state[n] = 2

    for n in sorted(graph):
        if n not in state:
            visit(n, [n])
    assert not cycle, cycle


def test_package_modules_are_imported_at_module_level_outside_the_cli():
    inner = [f"{path.relative_to(PACKAGE)}:{line} {target}" for path, name, package, tree in modules()
             if top(name) != "cli" for target, line, in_function in imports(tree, package) if in_function]
    assert not inner, inner


def test_no_code_outside_the_factory_branches_on_a_motion_head_name():
    pattern = re.compile(r"""\.motion\s*[!=]=|motion\s*[!=]=\s*["'](paths|lstm|resnet_lstm|compact)["']""")
    factory = PACKAGE / "models" / "cycle.py"
    found = []
    for path in PACKAGE.rglob("*.py"):
        for i, line in enumerate(path.read_text().splitlines(), 1):
            if pattern.search(line) and not (path == factory and "cfg.motion" in line):
                found.append(f"{path.relative_to(PACKAGE)}:{i}: {line.strip()}")
    assert not found, found
