"""The stage registry (cxrlens.stages) against the code: one naming rule, frozen configs, readers that exist, every
stage the code writes listed, every listed command in the CLI, and docs/architecture.md's table generated from it."""

from __future__ import annotations

import ast
import dataclasses
import inspect
from pathlib import Path

import typer

import cxrlens
from cxrlens.cli import app
from cxrlens.stages import STAGES, markdown_table, stage

SRC = Path(cxrlens.__file__).parent
DOC = SRC.parents[1] / "docs" / "architecture.md"
NOT_STAGES = {"activations.arrays"}  # write_array_store: a store from in-memory arrays (tests, benchmarks)


def test_entry_points_follow_the_naming_rule_and_take_workspace_then_config() -> None:
    for s in STAGES:
        fn = s.entry_point()
        expected = "run_" + (s.command or s.id).replace(" ", "_").replace("-", "_").replace(".", "_")
        assert fn.__name__ == expected, (s.id, fn.__name__)
        params = list(inspect.signature(fn).parameters.values())[:2]
        assert [p.kind for p in params] == [inspect.Parameter.POSITIONAL_OR_KEYWORD] * 2, s.id
        assert params[0].name in ("workspace", "ws") and params[1].name in ("config", "cfg"), (s.id, params)
        cls = s.config_class()
        assert cls.__name__.endswith("Config") and dataclasses.is_dataclass(cls), s.id
        assert cls.__dataclass_params__.frozen, f"{cls.__name__} is not frozen"
        assert all(callable(r) for r in s.reader_functions()), s.id


def _written_stage_ids() -> set[str]:
    """Every string literal passed as ``stage=`` (or as the stage argument of the phantom writer) in the library."""
    found = set()
    for path in SRC.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Call):
                continue
            for kw in node.keywords:
                if kw.arg == "stage" and isinstance(kw.value, ast.Constant) and isinstance(kw.value.value, str):
                    found.add(kw.value.value)
            name = getattr(node.func, "id", "")
            if name == "_import_rendered" and isinstance(node.args[2], ast.Constant):
                found.add(node.args[2].value)
    return {f for f in found if "." in f or f in ("interpret", "report")} - {""}


def test_every_stage_the_code_writes_is_registered_and_nothing_else() -> None:
    ids = {s.id for s in STAGES}
    written = _written_stage_ids() - NOT_STAGES
    assert written - ids == set(), "stages written but not in cxrlens.stages"
    assert ids - written == set(), "registered stages nobody writes"
    assert stage("sae.train").command == "sae train"


def test_every_registered_command_exists_in_the_cli() -> None:
    root = typer.main.get_command(app)

    def commands(group, prefix: str = "") -> set[str]:
        out = set()
        for name, cmd in group.commands.items():
            out.add(f"{prefix}{name}")
            if hasattr(cmd, "commands"):  # a group (typer's own click types are not click.Group)
                out |= commands(cmd, f"{prefix}{name} ")
        return out

    known = commands(root)
    assert {s.command for s in STAGES if s.command} - known == set()


def test_architecture_doc_carries_the_generated_table() -> None:
    assert markdown_table() in DOC.read_text(), (
        "regenerate: python -c 'import cxrlens.stages as s; print(s.markdown_table())'"
    )
