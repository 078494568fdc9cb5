"""Help texts survive rich markup: a literal ``[`` in an option's help must be escaped (``\\[default: …]``,
``cxrlens\\[scale]``), or rich reads ``[default: the store's dataset]`` as a style tag and drops it from
``--help``."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import cxrlens.cli
from tests.conftest import run_cli

CLI = Path(cxrlens.cli.__file__).parent


def _help_strings() -> list[tuple[str, int, str]]:
    out = []
    for path in sorted(CLI.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.keyword) and node.arg == "help":
                parts = [
                    n.value for n in ast.walk(node.value) if isinstance(n, ast.Constant) and isinstance(n.value, str)
                ]
                out.append((path.name, node.value.lineno, "".join(parts)))
    return out


def test_every_bracket_in_a_help_text_is_escaped():
    found = _help_strings()
    assert len(found) > 100
    bad = [f"{f}:{line}: {text!r}" for f, line, text in found if re.search(r"(?<!\\)\[", text)]
    assert not bad, "unescaped '[' (rich drops it as markup):\n" + "\n".join(bad)


def test_bracketed_defaults_are_shown_in_help():
    r = run_cli("align", "train", "--help")
    assert r.returncode == 0
    assert "[default: the store's dataset]" in " ".join(r.stdout.split()).replace("│", "").replace("  ", " ")
