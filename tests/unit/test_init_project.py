"""``airlock init``'s project: what it writes, what it refuses, and that an installed Airlock ships all of it."""

from __future__ import annotations

import fnmatch
import tomllib
from pathlib import Path

import pytest
import yaml

from engine.errors import InputError
from engine.local.project import STARTER, init_project, starter_files
from engine.spec import WorkflowSpec
from engine.spec.script import load_script
from tests.helpers import ROOT


def test_writes_the_project_and_it_loads(tmp_path: Path) -> None:
    written = init_project(tmp_path / "new" / "shop")
    assert Path(".gitignore") in written and Path("gitignore") not in written
    assert Path("__init__.py") not in written and Path("tools/__init__.py") in written
    shop = tmp_path / "new" / "shop"
    # the tools import in a process of that folder (tests/integration/test_init.py); here, the files' shapes
    spec = WorkflowSpec.model_validate(yaml.safe_load((shop / "workflows" / "grant_credit.yaml").read_text()))
    assert spec.name == "grant-credit" and spec.tools == ["tools.credits:grant_credit"]
    script = load_script(shop / "workflows" / "scripts" / "grant_credit.turns.yaml")
    assert script.turns_for("my coffee was cold") != script.turns_for("an outage") != script.turns


def test_overwrites_nothing_and_names_every_file_in_the_way(tmp_path: Path) -> None:
    (tmp_path / "tools").mkdir()
    (tmp_path / "tools" / "credits.py").write_text("mine")
    (tmp_path / "README.md").write_text("mine too")
    with pytest.raises(InputError) as info:
        init_project(tmp_path)
    assert f"{tmp_path / 'README.md'}" in str(info.value) and f"{tmp_path / 'tools' / 'credits.py'}" in str(info.value)
    assert (tmp_path / "tools" / "credits.py").read_text() == "mine"
    assert not (tmp_path / "workflows").exists()  # nothing written when anything is in the way
    target = tmp_path / "a-file"
    target.write_text("x")
    with pytest.raises(InputError, match="is a file"):
        init_project(target)


def test_every_starter_file_ships_in_the_package() -> None:
    """A file the package data globs miss would be absent from an installed (non-editable) Airlock."""
    patterns = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["engine"]
    engine = ROOT / "engine"
    for source in starter_files().values():
        relative = str(source.relative_to(engine))
        shipped = source.suffix == ".py" or any(fnmatch.fnmatch(relative, p) for p in patterns)
        assert shipped, f"{relative} is not in pyproject's package-data"
    assert (STARTER / "tools" / "__init__.py").is_file()  # so tools/*.py ship as a package


def test_writes_nothing_through_a_link_in_the_folder(tmp_path: Path) -> None:
    """A dangling link where a file goes, or a linked subfolder, would have the project written elsewhere."""
    outside = tmp_path / "outside"
    outside.mkdir()
    project = tmp_path / "project"
    project.mkdir()
    (project / "README.md").symlink_to(outside / "README.md")  # dangling: exists() says no
    with pytest.raises(InputError, match="README.md"):
        init_project(project)
    assert list(outside.iterdir()) == [] and not (project / "workflows").exists()
    (project / "README.md").unlink()
    (project / "tools").symlink_to(outside, target_is_directory=True)
    with pytest.raises(InputError, match="tools"):
        init_project(project)
    assert list(outside.iterdir()) == [] and not (project / "workflows").exists()
