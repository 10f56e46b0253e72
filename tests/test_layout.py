"""The package's architecture, as its folders state it: layers that import only the layers below them, an engine that
imports nothing else of the package, small modules, and tests that mirror the package."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "diffclf_lite"
# Each layer may import the layers listed for it, and itself; nothing else of the package.
ALLOWED = {
    "engine": set(),
    "data": {"engine"},
    "models": {"engine", "data"},
    "training": {"engine", "data", "models"},
    "runs": {"engine", "data", "models", "training"},
    "book": {"engine", "data", "models", "training", "runs"},
}
MAX_MODULE_LINES = 400
MAX_ENGINE_LINES = 1500


def _modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def _package_imports(path: Path, source: str | None = None) -> list[tuple[int, str]]:
    """(line, dotted module) of every import of diffclf_lite in the module at `path` (its text, or `source`),
    relative imports resolved from where the module lies; function-level (lazy) imports included."""
    package = list(path.relative_to(ROOT).with_suffix("").parts)[:-1]  # an __init__'s package is its own folder
    found = []
    tree = ast.parse(path.read_text(encoding="utf-8") if source is None else source)
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = ".".join(package[: len(package) - node.level + 1] + ([node.module] if node.module else []))
            names = [base] if node.module else [f"{base}.{a.name}" for a in node.names]  # `from .. import x`
        elif isinstance(node, ast.ImportFrom):
            names = [node.module or ""]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            continue
        found += [(node.lineno, n) for n in names if n == "diffclf_lite" or n.startswith("diffclf_lite.")]
    return found


def _layer(dotted: str) -> str | None:
    """The subpackage a dotted module belongs to (None for the top-level package and its __main__)."""
    parts = dotted.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in ALLOWED else None


def test_the_folders_are_the_layers() -> None:
    folders = {p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").is_file()}
    assert folders == set(ALLOWED), f"subpackages {sorted(folders)} differ from the layers {sorted(ALLOWED)}"
    loose = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert loose == ["__init__.py", "__main__.py"], f"modules outside a layer: {loose}; move them into one"


@pytest.mark.parametrize("layer", sorted(ALLOWED))
def test_each_layer_imports_only_the_layers_below_it(layer: str) -> None:
    wrong = []
    for path in sorted((PACKAGE / layer).rglob("*.py")):
        for line, dotted in _package_imports(path):
            target = _layer(dotted)
            if target != layer and target not in ALLOWED[layer]:
                wrong.append(f"{path.relative_to(ROOT)}:{line} imports {dotted}")
    assert not wrong, f"`{layer}` may import only {sorted(ALLOWED[layer]) or 'itself'}:\n" + "\n".join(wrong)


def test_the_import_check_sees_relative_absolute_and_lazy_imports() -> None:
    """The check above can fail: a stray import of each kind, in a module placed in the engine, is found."""
    source = "from ..runs import cli\nimport diffclf_lite.models.gmm\n\ndef f():\n    from ..data.prompts import x\n"
    found = _package_imports(PACKAGE / "engine" / "probe.py", source)
    assert [(line, _layer(d)) for line, d in found] == [(1, "runs"), (2, "models"), (5, "data")]
    nested = _package_imports(PACKAGE / "engine" / "strategies" / "probe.py", "from ...models import gmm\n")
    assert nested == [(1, "diffclf_lite.models")]


def test_modules_are_small_and_the_engine_reads_in_one_sitting() -> None:
    sizes = {p.relative_to(ROOT): len(p.read_text(encoding="utf-8").splitlines()) for p in _modules()}
    big = {str(p): n for p, n in sizes.items() if n > MAX_MODULE_LINES}
    assert not big, f"modules over {MAX_MODULE_LINES} lines (split them): {big}"
    engine = sum(n for p, n in sizes.items() if p.parts[1] == "engine")
    assert engine <= MAX_ENGINE_LINES, f"the engine has {engine} lines; it should stay under {MAX_ENGINE_LINES}"


def test_tests_mirror_the_package() -> None:
    """tests/<layer>/ holds the tests of diffclf_lite/<layer>/; the top level only checks the repository as a whole."""
    test_folders = {p.name for p in (ROOT / "tests").iterdir() if p.is_dir() and list(p.glob("test_*.py"))}
    assert test_folders == set(ALLOWED), f"test folders {sorted(test_folders)} differ from the layers {sorted(ALLOWED)}"
