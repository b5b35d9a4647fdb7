"""dvc.yaml tells the truth about code: every module of `uos` that a stage's command imports,
directly or through others, at the top of a module or inside a function, is among the stage's
deps, so that changing it makes `dvc repro` run the stage again (a stale output otherwise)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent


def module_path(name: str) -> Path | None:
    """The file of module `name` (relative to the project root), if it is one of ours."""
    base = Path(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if (ROOT / candidate).is_file():
            return candidate
    return None


def imported_modules(name: str) -> set[str]:
    """The uos modules `name` imports anywhere in its code, with the packages they live in (a
    package's __init__ runs on the import of any of its modules)."""
    path = module_path(name)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse((ROOT / path).read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            parts = package.split(".")
            base = node.module or ""
            if node.level:
                base = ".".join(parts[: len(parts) - node.level + 1] + ([base] if base else []))
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)  # `from pkg import module`
    modules = set()
    for module in found:
        parts = module.split(".")
        modules.update(".".join(parts[:i]) for i in range(1, len(parts) + 1))
    return {m for m in modules if m.split(".")[0] == "uos" and module_path(m)}


def closure(name: str) -> set[str]:
    seen: set[str] = set()
    todo = [name]
    while todo:
        module = todo.pop()
        if module not in seen:
            seen.add(module)
            todo.extend(imported_modules(module))
    return seen


def is_marker(module: str) -> bool:
    """A package's __init__ with nothing but a docstring and dunder names (`__version__`)."""
    tree = ast.parse((ROOT / module_path(module)).read_text())
    for node in tree.body:
        docstring = isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)
        dunder = isinstance(node, ast.Assign) and all(
            isinstance(t, ast.Name) and t.id.startswith("__") for t in node.targets
        )
        if not (docstring or dunder):
            return False
    return True


def command_module(cmd: str) -> str:
    """The module of the click command a stage runs (`uos label ...` -> uos.commands.label)."""
    from uos.cli import main

    words = cmd.split()
    assert words[0] == "uos", cmd
    return main.commands[words[1]].callback.__module__


def stage_code(name: str) -> tuple[str, set[str], list[str]]:
    stage = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"][name]
    module = command_module(" ".join(stage["cmd"].split()))
    deps = [d for d in stage["deps"] if d.startswith("uos")]
    return module, closure(module), deps


def uncovered(modules: set[str], deps: list[str]) -> list[str]:
    def covered(path: Path) -> bool:
        return any(path == Path(d) or Path(d) in path.parents for d in deps)

    return sorted(str(module_path(m)) for m in modules if not is_marker(m) and not covered(module_path(m)))


def covered_files(deps: list[str]) -> list[str]:
    """The modules a stage's code deps name (a folder: every module in it)."""
    paths = [ROOT / d for d in deps]
    files = [f for p in paths for f in (sorted(p.rglob("*.py")) if p.is_dir() else [p])]
    return [str(f.relative_to(ROOT)) for f in files]


STAGES = ["parse", "label", "split", "train"]


@pytest.mark.parametrize("stage", STAGES)
def test_a_stage_lists_every_module_its_command_imports(stage):
    module, modules, deps = stage_code(stage)
    assert module_path(module) is not None and len(modules) > 5, (module, modules)
    missing = uncovered(modules, deps)
    assert not missing, f"dvc.yaml stage {stage} ({module}) lacks code deps: {missing}"
    extra = sorted(set(covered_files(deps)) - {str(module_path(m)) for m in modules})
    assert not extra, f"dvc.yaml stage {stage} ({module}) depends on code it does not run: {extra}"
    for dep in deps:  # a dep that names nothing (a module moved away) would watch nothing
        assert (ROOT / dep).exists(), f"stage {stage}: {dep} does not exist"


def test_every_stage_of_the_pipeline_is_checked():
    assert sorted(yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]) == sorted(STAGES)


def test_the_closure_follows_imports_inside_functions():
    """`uos split` reads the labels table through an import inside split_dataset."""
    assert "uos.labels.table" in closure("uos.training.folds")
    assert uncovered({"uos.labels.table"}, ["uos/training"]) == ["uos/labels/table.py"]


def test_the_parse_cache_key_covers_the_code_that_reads_a_hole():
    """A cached hole is stale when any code that made it changed: the parse cache's key digests
    every module the readers and checks import (outputs.py only writes the pack: not part of it)."""
    from uos.dataset.cache import PARSER_CODE

    modules = closure("uos.holes.read") | closure("uos.holes.quality") | closure("uos.dataset.cache")
    modules -= {"uos.outputs"}
    code = [f"uos/{name}" for name in PARSER_CODE]
    assert not uncovered(modules, code)
    # ... and no more: a change to labelling code (the profile) must not make every input parse again
    assert set(covered_files(code)) <= {str(module_path(m)) for m in modules}, covered_files(code)
