"""``airlock init``: a small working project (workflow, tool with facts, policy with tests, scripted turns).

The project is the folder :mod:`engine.local.starter`, copied as it is (less
this package's own ``__init__.py`` and caches; ``gitignore`` becomes
``.gitignore``). Nothing that exists is overwritten, and nothing is written
through a link inside the folder (a dangling one where a file goes, or a linked
subfolder, would put the project's files elsewhere).
"""

from __future__ import annotations

from pathlib import Path

from engine.errors import InputError

STARTER = Path(__file__).with_name("starter")
_RENAMED = {Path("gitignore"): Path(".gitignore")}
_LEFT_OUT = {Path("__init__.py")}


def starter_files() -> dict[Path, Path]:
    """Each file of the project, by its path in the new folder, and where it is copied from."""
    files: dict[Path, Path] = {}
    for source in sorted(STARTER.rglob("*")):
        relative = source.relative_to(STARTER)
        if source.is_file() and relative not in _LEFT_OUT and "__pycache__" not in relative.parts:
            files[_RENAMED.get(relative, relative)] = source
    return files


def init_project(target: Path) -> list[Path]:
    """Write the project into ``target`` (created if missing); the files written, by their path in it.

    Raises:
        InputError: ``target`` is a file, or would have files overwritten or written through a link (all of
            them named).
    """
    if target.exists() and not target.is_dir():
        raise InputError(f"{target} is a file; airlock init writes a project into a folder")
    files = starter_files()
    taken = sorted({str(path) for relative in files for path in _in_the_way(target, relative)})
    if taken:
        raise InputError(f"{target} already has {', '.join(taken)}; airlock init overwrites nothing and writes "
                         "through no link (choose a new folder, or move these aside)")
    for relative, source in files.items():
        (target / relative).parent.mkdir(parents=True, exist_ok=True)
        with (target / relative).open("xb") as copy:  # exclusive: never through a link made since the check
            copy.write(source.read_bytes())
    return list(files)


def _in_the_way(target: Path, relative: Path) -> list[Path]:
    """What stops ``relative`` being written in ``target``: the file itself (a link too, even a dangling one),
    or a linked folder on its way."""
    path = target / relative
    folders = [target.joinpath(*relative.parts[:i]) for i in range(1, len(relative.parts))]
    return [p for p in folders if p.is_symlink()] + ([path] if path.is_symlink() or path.exists() else [])
