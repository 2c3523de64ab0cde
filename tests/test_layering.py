"""The layering of the packages (DESIGN.md): a module imports only from its own layer and the ones below, and
the packages import each other without circles. Read from the source with ``ast``, so imports inside functions
and under ``if TYPE_CHECKING:`` count too."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "paintgym"

LAYERS = {
    "paintgym": 0,  # the package itself: version and env registration, imports nothing of ours
    "canvas": 1,  # strokes, renderer, images, files, numba helpers
    "generative": 2,  # generative models, their losses, data and training steps
    "rewards": 3,
    "envs": 4,  # the canvas core, targets, observations and the Gymnasium faces
    "agents": 5,  # learners (and, until they move to experiments/, some run tooling)
    "experiments": 6,  # run tooling: runs, config, checkpoints, logs, paint/eval/sweep/report
    "cli": 7,  # argument dispatch only (paintgym/cli.py, python -m paintgym)
    "__main__": 7,
}
"""Layer of each subpackage (or top-level module) of paintgym, bottom first."""


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(path): path for path in sorted(ROOT.rglob("*.py"))}


def _resolve(name: str) -> str:
    """The module an imported dotted name lives in: ``paintgym.canvas.render.paint_`` -> ``paintgym.canvas.render``."""
    while name not in MODULES and "." in name:
        name = name.rsplit(".", 1)[0]
    return name


def imports_of(module: str) -> set[str]:
    """Every paintgym module that ``module`` imports, anywhere in its source."""
    path = MODULES[module]
    return imports_in(path.read_text(), module, path.name == "__init__.py")


def imports_in(source: str, module: str, is_package: bool = False) -> set[str]:
    """Every paintgym module imported anywhere in ``source``, the text of ``module``."""
    package = module if is_package else module.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(source, module)):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the package, up level - 1 packages
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            # `from paintgym import generative` imports a submodule; `from paintgym import ENV_IDS` an attribute
            names = [f"{base}.{alias.name}" for alias in node.names]
        else:
            continue
        found |= {_resolve(name) for name in names if name == "paintgym" or name.startswith("paintgym.")}
    return found - {module}


def layer_name(module: str) -> str:
    """The entry of :data:`LAYERS` a module belongs to: its subpackage (``paintgym.envs.core`` -> ``envs``)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def test_every_package_has_a_layer():
    unknown = sorted({layer_name(module) for module in MODULES} - set(LAYERS))
    assert not unknown, f"give these packages a layer in LAYERS (and DESIGN.md): {unknown}"


def test_no_module_imports_a_layer_above_its_own():
    upward = []
    for module in MODULES:
        own = LAYERS[layer_name(module)]
        for imported in sorted(imports_of(module)):
            if LAYERS[layer_name(imported)] > own:
                upward.append(f"{module} (layer {own}) imports {imported} (layer {LAYERS[layer_name(imported)]})")
    assert not upward, "imports from a higher layer:\n" + "\n".join(upward)


def test_the_packages_import_each_other_without_circles():
    graph: dict[str, set[str]] = {}
    for module in MODULES:
        graph.setdefault(layer_name(module), set()).update(
            layer_name(imported) for imported in imports_of(module) if layer_name(imported) != layer_name(module))
    done: set[str] = set()

    def visit(node: str, path: list[str]) -> None:  # depth-first; a node on the current path closes a circle
        if node in path:
            pytest.fail("packages import each other in a circle: " + " -> ".join(path[path.index(node):] + [node]))
        if node not in done:
            for succ in sorted(graph.get(node, ())):
                visit(succ, path + [node])
            done.add(node)

    for node in sorted(graph):
        visit(node, [])


def test_the_checker_sees_imports_inside_functions_and_relative_ones():
    source = ("def f():\n    from paintgym.agents import ppo\n"
              "from . import render\nfrom .strokes import STROKE_DIM\nfrom paintgym import generative, ENV_IDS\n")
    assert imports_in(source, "paintgym.canvas.probe") == {
        "paintgym.agents.ppo", "paintgym.canvas.render", "paintgym.canvas.strokes", "paintgym.generative", "paintgym"}
