"""Imports run one way: spec -> arch -> plan -> emit -> losses/train -> cli.

Every import of every tasgen module (those inside functions and under
TYPE_CHECKING included: they are arrows a reader follows too) is read with `ast`
and checked against `LAYERS`: a module may import its own layer and the layers
below it, never one above. The map is docs/design.md's module map.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# Lowest first. A name is a subpackage or top-level module of tasgen; "cli" is tasgen_cli.
LAYERS: list[tuple[str, set[str]]] = [
    ("the spec front end and the method registry (no torch), checkpoint files, output paths, run metrics, "
     "the teacher store, parent-death signals, the global random generators",
     {"spec", "methods", "checkpoint", "output", "run_metrics", "teacher_store", "parent_death", "generators"}),
    ("tasgen's own layers and stage-described backbones", {"blocks", "backbone"}),
    ("reading a model: stage tables", {"arch"}),
    ("the plan, the planner and the plan's text views", {"plan", "planner", "plan_views", "plan_draw"}),
    ("plan -> nn.Modules: the systems", {"emit"}),
    ("the passes as one pipeline", {"compiler"}),
    ("losses and data for training", {"losses", "data"}),
    ("training", {"train"}),
    ("what runs training: studies, benchmarks, the Python API", {"study", "bench", "api", "__init__"}),
    ("the command line", {"cli"}),
]
LEVEL = {unit: level for level, (_, units) in enumerate(LAYERS) for unit in units}


def _modules() -> list[tuple[str, Path]]:
    found = [(".".join(p.relative_to(ROOT).with_suffix("").parts), p) for p in (ROOT / "tasgen").rglob("*.py")]
    found += [("tasgen_cli." + p.relative_to(ROOT / "cli").with_suffix("").as_posix().replace("/", "."), p)
              for p in (ROOT / "cli").rglob("*.py")]
    return sorted(found)


def _unit(module: str) -> str:
    parts = module.split(".")
    if parts[0] == "tasgen_cli":
        return "cli"
    return parts[1] if len(parts) > 1 else "__init__"


def _imports(module: str, path: Path) -> list[tuple[int, str]]:
    """(line, imported tasgen module) for every import in ``path``."""
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                name = ".".join([*base, *([node.module] if node.module else [])])
            else:
                name = node.module or ""
            if name in ("tasgen", "tasgen_cli"):  # `from tasgen import backbone` names a submodule
                for alias in node.names:
                    if alias.name == "__version__":
                        continue  # the version string lives in the root package, loaded before anything
                    out.append((node.lineno, f"{name}.{alias.name}"))
            else:
                out.append((node.lineno, name))
    return [(line, name) for line, name in out if name.split(".")[0] in ("tasgen", "tasgen_cli")]


def test_every_unit_has_a_layer() -> None:
    units = {_unit(m) for m, _ in _modules()}
    assert units - LEVEL.keys() == set(), "add the new module to LAYERS (and to docs/design.md's map)"


@pytest.mark.parametrize(("module", "path"), _modules(), ids=[m for m, _ in _modules()])
def test_imports_run_down_the_layers(module: str, path: Path) -> None:
    mine = LEVEL[_unit(module)]
    against = [
        f"{path.relative_to(ROOT)}:{line}: imports {name} ({LAYERS[LEVEL[_unit(name)]][0]}, above "
        f"{LAYERS[mine][0]})"
        for line, name in _imports(module, path)
        if LEVEL.get(_unit(name), -1) > mine
    ]
    assert not against, "\n".join(against)


def test_the_check_sees_an_import_against_the_arrows(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    from tasgen_cli.app import main\n    from ..train import loop\n")
    found = _imports("tasgen.emit.bad", bad)
    assert found == [(2, "tasgen_cli.app"), (3, "tasgen.train")]
    assert all(LEVEL[_unit(name)] > LEVEL["emit"] for _, name in found)
