"""Imports follow the flow: sources → prompts → models → scoring → metrics → training → mitigations →
probes → reporting → runs, with the shared records below all of them. A module imports only from its
own package or from layers before it."""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "sycophancy"
LAYERS = (
    {"errors", "records", "files", "hub", "schema", "seeds", "registry"},
    {"sources"},
    {"prompts"},
    {"models"},
    {"scoring"},
    {"metrics"},
    {"training"},
    {"mitigations"},
    {"probes"},
    {"reporting"},
    {"runs", "report"},
)


def layer(unit: str) -> int:
    """The layer of a top-level module or package of sycophancy."""
    for depth, units in enumerate(LAYERS):
        if unit in units:
            return depth
    raise AssertionError(f"sycophancy.{unit} is in no layer: add it to LAYERS in {__file__}")


def unit_of(path: Path) -> str:
    """The top-level module or package a source file belongs to."""
    return path.relative_to(PACKAGE).parts[0].removesuffix(".py")


def imported_units(path: Path) -> set[str]:
    """Top-level sycophancy modules or packages a source file imports (at any depth in the file)."""
    units = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            parts = node.module.split(".")
            if parts[0] == "sycophancy":
                units.update([parts[1]] if len(parts) > 1 else [a.name for a in node.names])
        elif isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                if parts[0] == "sycophancy" and len(parts) > 1:
                    units.add(parts[1])
        if isinstance(node, ast.ImportFrom) and node.level:
            raise AssertionError(f"{path}: relative import; use `from sycophancy.… import …`")
    return units


SOURCES = sorted(p for p in PACKAGE.rglob("*.py") if p.name != "__init__.py" or p.parent != PACKAGE)


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_follow_the_flow(path):
    own = unit_of(path)
    against = sorted(u for u in imported_units(path) if u != own and layer(u) > layer(own))
    assert not against, f"{path.relative_to(PACKAGE)} ({own}) imports later stage(s) {against}"
