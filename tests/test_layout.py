"""The layout keeps its promises: no import cycles, no plotting on the training path, the
package list complete, and a clone's configs importable as jaxae.configs."""

import ast
import os
import shutil
import subprocess
import sys
import tomllib

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = os.path.join(ROOT, "jaxae")


def module_name(path: str) -> str:
    relative = os.path.relpath(path, ROOT)[:-3].replace(os.sep, ".")
    return relative[:-len(".__init__")] if relative.endswith(".__init__") else relative


def jaxae_modules() -> dict[str, str]:
    found = {}
    for directory, _, names in os.walk(PACKAGE):
        for name in names:
            if name.endswith(".py"):
                path = os.path.join(directory, name)
                found[module_name(path)] = path
    return found


def imports_of(path: str, modules: set[str], package: str) -> set[str]:
    """The jaxae modules a file imports at module level (`from a import b` counts a.b when
    that is a module, else a)."""
    with open(path) as f:
        tree = ast.parse(f.read())
    found = set()
    for node in tree.body:
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name in modules}
        elif isinstance(node, ast.ImportFrom) and node.module:
            base = node.module if node.level == 0 else package.rsplit(".", node.level - 1)[0]
            for alias in node.names:
                candidate = f"{base}.{alias.name}"
                found.add(candidate if candidate in modules else base)
    return found & modules


def test_no_import_cycles():
    modules = jaxae_modules()
    graph = {}
    for name, path in modules.items():
        package = name if path.endswith("__init__.py") else name.rsplit(".", 1)[0]
        graph[name] = imports_of(path, set(modules), package) - {name}
    state: dict[str, int] = {}

    def visit(node: str, trail: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            assert state.get(nxt) != 1, f"import cycle: {' -> '.join(trail + [node, nxt])}"
            if nxt not in state:
                visit(nxt, trail + [node])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [])


def parsed_files(*folders: str) -> list[tuple[str, ast.Module]]:
    """(path from the repository root, syntax tree) of every .py file under `folders`."""
    found = []
    for folder in folders:
        for directory, _, names in os.walk(os.path.join(ROOT, folder)):
            for name in sorted(n for n in names if n.endswith(".py")):
                path = os.path.join(directory, name)
                with open(path) as f:
                    found.append((os.path.relpath(path, ROOT), ast.parse(f.read())))
    return found


def imports_jaxae(tree: ast.Module) -> bool:
    """Whether a file imports jaxae anywhere (at its top or inside a function)."""
    return any(isinstance(node, ast.ImportFrom) and (node.module or "").startswith("jaxae")
               or isinstance(node, ast.Import) and any(a.name.startswith("jaxae")
                                                       for a in node.names)
               for node in ast.walk(tree))


def test_every_command_that_imports_jaxae_parses_with_one_line_errors():
    """argparse's own error prints the whole usage first; jaxae's commands, its benchmarks'
    and its scripts' give one line (`jaxae.cli.arguments.OneLineErrors`). Left to argparse:
    the drivers that import no jaxae (kill_test, eval_interrupt_test), the peer's (run by
    PyTorch's Python) and `light`, which import only jaxae's standard-library modules, or
    import jaxae only where they measure."""
    light = {"scripts/collect_runs.py", "benchmarks/streaming.py"}
    plain = [path for path, tree in parsed_files("jaxae", "benchmarks", "scripts")
             if path not in light and imports_jaxae(tree) and any(
                 isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                 and node.func.attr == "ArgumentParser" for node in ast.walk(tree))]
    assert plain == [], f"argparse.ArgumentParser in {plain}: use OneLineErrors"


def test_training_loads_no_plotting_and_the_pictures_leave_a_notebooks_backend_and_figures_alone(
        tmp_path):
    """One fresh process: training's imports load no plotting and no evaluation extras; then
    jaxae's pictures, drawn on Figure objects, not pyplot (importing its plots switched the
    process's backend to Agg: a notebook's inline figures stopped showing), leave the
    backend, and leave no figure open where a picture could not be written."""
    code = ("import sys, train, jaxae.training.trainer\n"
            "print(sorted(m for m in ('matplotlib', 'jaxae.evaluation.iwae', "
            "'jaxae.evaluation.probe', 'jaxae.evaluation.pictures') if m in sys.modules))\n"
            "import matplotlib, matplotlib.pyplot as plt, numpy as np\n"
            "from jaxae.evaluation import plots\n"
            "from jaxae.experiments import figures\n"
            "try:\n"
            f"    plots.image_rows([('a', np.zeros((2, 4, 4, 1)))], 't', {str(tmp_path)!r})\n"
            "except OSError:\n"
            "    pass\n"
            "print(matplotlib.get_backend(), plt.get_fignums())\n")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                            text=True, timeout=120, env={**os.environ, "MPLBACKEND": "svg"})
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().splitlines() == ["[]", "svg []"]


def test_every_package_is_listed_for_installation():
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        listed = set(tomllib.load(f)["tool"]["setuptools"]["packages"])
    packages = {module_name(os.path.join(d, "__init__.py")) for d, _, names in os.walk(PACKAGE)
                if "__init__.py" in names}
    assert listed == packages | {"jaxae.configs"}


def test_a_clone_used_without_installing_has_its_configs_as_jaxae_configs():
    """PYTHONPATH=. on a machine where jaxae is not installed (a GPU machine's copy): the
    experiments' `jaxae.configs.<name>` is the clone's configs/<name>.py."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    code = ("import sys; sys.meta_path = [f for f in sys.meta_path if 'ditable' not in repr(f)]\n"
            "from jaxae.experiments.common import load_config\n"
            "import jaxae.configs\n"
            "print(load_config('conv_ae_mnist').data.name, jaxae.configs.__file__)")
    done = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True,
                          text=True, timeout=120, env={**os.environ, "PYTHONPATH": root})
    assert done.returncode == 0, done.stderr[-1500:]
    assert done.stdout.split() == ["mnist", os.path.join(root, "configs", "__init__.py")]


@pytest.mark.parametrize("stray_folder", [False, True])
def test_a_clone_beside_another_checkouts_install_has_its_own_configs(tmp_path, stray_folder):
    """A clone on PYTHONPATH while the environment holds an editable install of another
    checkout: `jaxae.configs` is the clone's, as `jaxae` is; so too where a folder
    jaxae/configs/ without an __init__.py (a namespace package, of no file) is in the way."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    for folder in ("jaxae", "configs"):
        shutil.copytree(os.path.join(root, folder), tmp_path / folder,
                        ignore=shutil.ignore_patterns("__pycache__"))
    if stray_folder:
        (tmp_path / "jaxae" / "configs" / "__pycache__").mkdir(parents=True)
    code = "import jaxae, jaxae.configs.test as t; print(jaxae.__file__, t.__file__)"
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                          text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(tmp_path)})
    assert done.returncode == 0, done.stderr[-1500:]
    assert done.stdout.split() == [str(tmp_path / "jaxae" / "__init__.py"),
                                   str(tmp_path / "configs" / "test.py")]


def test_every_legend_names_its_place():
    """matplotlib warns that a legend placed by default ("best", searched among the plotted
    points) "can be slow with large amounts of data" whenever the search takes a second, as
    on a busy machine: a warning a user can do nothing about. Named, "best" included, it
    does not warn."""
    unplaced = [f"{path}:{node.lineno}" for path, tree in parsed_files("jaxae", "benchmarks",
                                                                       "scripts")
                for node in ast.walk(tree)
                if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                and node.func.attr == "legend" and not any(k.arg == "loc" for k in node.keywords)]
    assert unplaced == [], f"legends placed by default at {unplaced}: pass loc"
