"""The dependency direction: a core that knows neither side, a text side and a vision side that
know only the core, and a thin top layer (the CLI, the task dispatch, the batch runner).

Two checks: what importing each package really loads, in a fresh interpreter; and every import
statement of every module (function-level ones included), parsed, against the allowed edges.
"""

from __future__ import annotations

import ast
import graphlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# the only modules (and packages) that know both sides
TOP = {"textcnn.cli", "textcnn.__main__", "textcnn.tasks", "textcnn.batch_runner", "textcnn.onnx",
       "textcnn.serve"}
# What each layer may import from the project (besides itself).
ALLOWED = {"core": {"core"}, "text": {"core", "text"}, "vision": {"core", "vision"},
           "top": {"core", "text", "vision", "top"}}
TEXT_ONLY_PACKAGES = ("tokenizers", "datasets", "gensim", "pyarrow", "pandas")


def layer(module: str) -> str | None:
    """The layer of a project module (None: not the project's)."""
    root = module.split(".")[0]
    if root == "vision":
        return "vision"
    if root != "textcnn":
        return None
    if module == "textcnn.core" or module.startswith("textcnn.core."):
        return "core"
    return "top" if any(module == top or module.startswith(top + ".") for top in TOP) else "text"


def loaded_after(code: str) -> list[str]:
    """The modules loaded by running `code` in a fresh interpreter (the repository first on the
    path, as the tests see it)."""
    script = f"import sys, json\n{code}\nprint(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True,
                         env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"}, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def project_modules(modules: list[str], *layers: str) -> list[str]:
    return [m for m in modules if layer(m) in layers]


@pytest.mark.parametrize("statement", ["import vision", "import vision.pipeline",
                                       "import vision.detection.pipeline"])
def test_vision_loads_no_text_module_nor_text_libraries(statement):
    modules = loaded_after(statement)
    assert project_modules(modules, "text", "top") == ["textcnn"]  # the package root, which is lazy
    assert not [m for m in modules if m.split(".")[0] in TEXT_ONLY_PACKAGES]


def test_core_loads_no_text_or_vision_module_and_no_torch():
    modules = loaded_after("import textcnn.core")
    assert project_modules(modules, "text", "top", "vision") == ["textcnn"]
    assert "torch" not in modules
    # its names still resolve, from the module that defines them
    modules = loaded_after("import textcnn.core\nassert textcnn.core.ConvBlock2d.__module__ == "
                           "'textcnn.core.conv'")
    assert "torch" in modules and project_modules(modules, "text", "top", "vision") == ["textcnn"]


def test_cli_help_imports_no_torch():
    code = ("from textcnn.cli import main\n"
            "for args in (['--help'], ['train', '--help'], ['predict', '--help'], ['batch', '--help']):\n"
            "    try:\n        main(args)\n    except SystemExit as exc:\n        assert exc.code == 0\n")
    modules = loaded_after(code)
    assert "torch" not in modules and "numpy" not in modules
    assert not [m for m in modules if m.split(".")[0] in TEXT_ONLY_PACKAGES]


def module_level(tree: ast.Module) -> list[ast.stmt]:
    """The statements that run when a module is imported (those of `try` blocks too; not those
    of functions, classes or `if TYPE_CHECKING:`)."""
    found = []
    for node in tree.body:
        found += [node, *(module_level(ast.Module(node.body + node.orelse + node.finalbody, []))
                          if isinstance(node, ast.Try) else [])]
    return found


def imports_of(path: Path, module: str, *, at_import: bool = False) -> list[tuple[int, str]]:
    """Every project module `path` imports (line, module name), at any depth of the file (with
    `at_import`: only when it is imported); relative imports are resolved; `from pkg import
    name` counts `pkg.name` when that is a module of the project, else `pkg`."""
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    found = []
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in module_level(tree) if at_import else ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([base] if base else []))
            for alias in node.names:
                full = f"{base}.{alias.name}"
                is_module = (REPO / Path(*full.split("."))).with_suffix(".py").is_file() \
                    or (REPO / Path(*full.split(".")) / "__init__.py").is_file()
                found.append((node.lineno, full if is_module else base))
    return [(line, name) for line, name in found if layer(name) is not None]


def all_modules() -> dict[str, Path]:
    files = sorted([*REPO.glob("textcnn/**/*.py"), *REPO.glob("vision/**/*.py")])
    names = {}
    for path in files:
        parts = path.relative_to(REPO).with_suffix("").parts
        names[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return names


def test_every_import_follows_the_layers():
    modules = all_modules()
    assert {"textcnn.core.errors", "textcnn.tasks", "textcnn.tasks.vision", "vision.pipeline"} <= set(modules)
    forbidden = []
    for module, path in modules.items():
        for line, target in imports_of(path, module):
            if layer(target) not in ALLOWED[layer(module)]:
                forbidden.append(f"{path.relative_to(REPO)}:{line}: {layer(module)} {module} -> "
                                 f"{layer(target)} {target}")
    assert not forbidden, "\n".join(forbidden)


def test_the_modules_import_one_another_without_a_cycle():
    """Importing a module runs its parent packages too, so they count as imported; imports made
    only inside functions (the registries load their model files on first use) do not."""
    modules = all_modules()
    graph: dict[str, set[str]] = {}
    for module, path in modules.items():
        graph[module] = set()
        for _, target in imports_of(path, module, at_import=True):
            parts = target.split(".")
            graph[module] |= {name for name in (".".join(parts[:i]) for i in range(1, len(parts) + 1))
                              if name in modules and name != module and not module.startswith(name + ".")}
    try:
        order = list(graphlib.TopologicalSorter(graph).static_order())
    except graphlib.CycleError as err:
        pytest.fail(f"import cycle: {' -> '.join(err.args[1])}")
    assert {"textcnn.core.errors", "vision.data"} <= graph["vision.pipeline"]  # the graph is not empty
    assert order.index("textcnn.core.errors") < order.index("vision.data") < order.index("vision.pipeline")


def test_the_import_check_sees_function_level_and_relative_imports(tmp_path):
    """The checker itself, on a module written here: imports inside functions and methods, and
    relative ones, are found and classified."""
    path = tmp_path / "probe.py"
    path.write_text("from __future__ import annotations\nimport os\n\n"
                    "def f():\n    from vision.pipeline import train_image_recipe\n    return 1\n\n"
                    "class C:\n    def g(self):\n        from . import errors\n        import textcnn.tasks\n",
                    encoding="utf-8")
    found = sorted(imports_of(path, "textcnn.core.probe"))
    assert found == [(5, "vision.pipeline"), (10, "textcnn.core.errors"), (11, "textcnn.tasks")]
    assert [layer(name) for _, name in found] == ["vision", "core", "top"]
