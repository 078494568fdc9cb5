"""Import rules between cxrlens's packages, read from the source (AST), so a violation fails here, not in review.

A *package* is a top-level entry of ``src/cxrlens`` (``interpret``, ``report``, ``evaluate``, ``minilm`` …). One
package may use another's public API only: no ``from cxrlens.<other> import _private``, anywhere in a module
(function-level imports included).
"""

from __future__ import annotations

import ast
from pathlib import Path

import cxrlens

ROOT = Path(cxrlens.__file__).parent


def _package(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def _modules() -> list[tuple[str, Path]]:
    out = []
    for path in sorted(ROOT.rglob("*.py")):
        name = ".".join(("cxrlens", *path.relative_to(ROOT).with_suffix("").parts)).removesuffix(".__init__")
        out.append((name, path))
    return out


def private_cross_package_imports(modules: list[tuple[str, Path]], root: Path = ROOT) -> list[str]:
    """``file:line module.name`` for every import of a private name from another cxrlens package."""
    bad = []
    for name, path in modules:
        own = _package(name)
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
            if not (isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("cxrlens")):
                continue
            other = _package(node.module)
            for alias in node.names:
                if other and other != own and alias.name.startswith("_") and not alias.name.startswith("__"):
                    bad.append(f"{path.relative_to(root.parent)}:{node.lineno} {node.module}.{alias.name}")
    return bad


def test_no_package_imports_another_packages_private_names() -> None:
    assert _modules(), "no modules found"
    assert private_cross_package_imports(_modules()) == []


def test_the_rule_catches_a_private_import(tmp_path: Path) -> None:
    """The checker is not vacuous: a planted private cross-package import (inside a function) is reported, a
    private import within the same package and a public cross-package one are not."""
    (tmp_path / "a.py").write_text("def f():\n    from cxrlens.report.run import _hidden\n    return _hidden\n")
    (tmp_path / "b.py").write_text("from cxrlens.report.compile import _impression\nfrom cxrlens.evaluate import x\n")
    mods = [("cxrlens.interpret.a", tmp_path / "a.py"), ("cxrlens.report.b", tmp_path / "b.py")]
    found = private_cross_package_imports(mods, root=tmp_path)
    assert len(found) == 1 and found[0].endswith(":2 cxrlens.report.run._hidden")
