"""The shape of the code, checked: the headless library loads no UI, model or tracking package
(harlequin's test), imports run one way (no cycles between modules), and every command is in the
README and, where a recipe runs it, in `just --list` (sqlite-utils' docs test)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from test_dvc_deps import imported_modules

import servers

ROOT = Path(__file__).resolve().parent.parent
HEADLESS = ["uos.holes", "uos.dataset", "uos.labels", "uos.annotate.session", "uos.training.report"]
HEAVY = ("torch", "textual", "mlflow", "paho")


def _loaded_by(modules: list[str]) -> list[str]:
    """The heavy packages that importing `modules` loads, in a fresh interpreter."""
    code = f"import sys, {', '.join(modules)}; print(sorted({{m.split('.')[0] for m in sys.modules}} & set({HEAVY!r})))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads(result.stdout.splitlines()[-1].replace("'", '"'))


@pytest.mark.parametrize("module", HEADLESS)
def test_a_headless_module_loads_no_ui_model_or_tracking_package(module):
    # A package with every module in it; a module alone.
    folder = ROOT / Path(*module.split("."))
    names = [module] + [f"{module}.{p.stem}" for p in sorted(folder.glob("*.py")) if p.stem != "__init__"]
    assert _loaded_by(names) == [], names


def test_the_hygiene_check_sees_a_heavy_import():
    assert _loaded_by(["uos.annotate.app"]) == ["textual"]


def _modules() -> list[str]:
    names = []
    for path in sorted((ROOT / "uos").rglob("*.py")):
        name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
        names.append(name.removesuffix(".__init__"))
    return names


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """A cycle of imports between modules, if there is one (depth-first search)."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for other in sorted(graph[node]):
            if state.get(other) == 1:
                return [*path[path.index(other) :], other]
            if other not in state and (found := visit(other)):
                return found
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_imports_between_modules_run_one_way():
    # A package's __init__ imported by its own modules is not a cycle (Python loads it first).
    graph = {m: {i for i in imported_modules(m) if i != m and not m.startswith(i + ".")} for m in _modules()}
    assert _cycle(graph) is None, " -> ".join(_cycle(graph))


def test_cycle_finder_finds_a_cycle():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def test_every_command_is_in_the_readme_and_its_recipes_in_just_list():
    from uos.cli import main

    readme = (ROOT / "README.md").read_text()
    table = set(re.findall(r"^\| `uos ([a-z-]+)", readme, flags=re.MULTILINE))
    assert table == set(main.commands), f"README table {sorted(table)} vs commands {sorted(main.commands)}"
    for name in main.commands:
        assert f"uos {name}" in readme.split("## Commands", 1)[1], name
    dump = subprocess.run(
        ["just", "--justfile", str(ROOT / "justfile"), "--dump", "--dump-format", "json"],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
        env=servers.venv_env(),
    )
    listed = subprocess.run(
        ["just", "--justfile", str(ROOT / "justfile"), "--list"],
        capture_output=True,
        text=True,
        check=True,
        env=servers.venv_env(),
    ).stdout
    running = {}
    for name, recipe in json.loads(dump.stdout)["recipes"].items():
        body = json.dumps(recipe["body"])
        for command in re.findall(r"\buos ([a-z-]+)", body):
            if command in main.commands:
                running.setdefault(command, []).append(name)
                assert recipe["doc"] and not recipe["private"], f"recipe {name} runs uos {command} but has no doc"
                assert re.search(rf"^\s+{re.escape(name)}\b.*# ", listed, flags=re.MULTILINE), name
    assert {"parse", "predict", "serve", "promote", "annotate"} <= set(running), running


def test_every_function_in_uos_fits_on_a_screen():
    """60 lines at most, from `def` to the last line (decorators not counted)."""
    import ast

    long = []
    for path in sorted((ROOT / "uos").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.end_lineno - node.lineno + 1 > 60:
                long.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name} ({node.end_lineno - node.lineno + 1})")
    assert not long, long
