"""The policy bundle the local OPA serves, built from the policies folder.

OPA never reads the policies folder itself: ``opa build`` packs its Rego
modules and data documents into a bundle, and OPA serves that bundle until it
stops. Three properties make the policy immutable while it runs and every
decision attributable:

- the bundle's revision is a content hash of every file in it, so any change to
  a Rego module or a data document gives a new revision;
- its manifest declares roots (the top of every package and data document), so
  OPA itself refuses writes under them;
- it carries a ``system.authz`` policy that lets clients query but never write,
  enforced by OPA run with ``--authorization=basic``.

Rego unit tests (``*_test.rego``) stay out of the bundle; ``opa test`` runs them.

``python -m engine.boundary.bundle POLICIES OUT`` stages the bundle as a folder
(what an OPA container serves with ``--bundle OUT``) and prints its revision.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from engine.errors import StackError

# The only data files OPA loads from a bundle; any other JSON or YAML file would not count.
DATA_FILES = frozenset({"data.json", "data.yaml", "data.yml"})
AUTHZ_PATH = "system/authz.rego"
AUTHZ_REGO = """package system.authz

import rego.v1

# Queries and health checks only. Every other call, in particular a PUT, PATCH
# or DELETE of a policy or a data document, is refused: OPA decides with what
# the bundle holds and nothing else.
default allow := false

allow if {
	input.method in {"GET", "POST"}
	input.path[0] == "v1"
	input.path[1] == "data"
}

allow if {
	input.method == "GET"
	input.path == ["health"]
}

# Read-only: the engine checks which packages the bundle's modules declare.
allow if {
	input.method == "GET"
	input.path[0] == "v1"
	input.path[1] == "policies"
}
"""
_PACKAGE = re.compile(r"^package\s+([\w.]+)", re.MULTILINE)


def bundle_files(policies_dir: Path) -> dict[str, bytes]:
    """What goes into the bundle, by path inside it: Rego modules (not tests), data documents, the authz policy."""
    if not policies_dir.is_dir():
        raise StackError(f"policies folder {policies_dir} does not exist")
    files: dict[str, bytes] = {}
    for path in sorted(policies_dir.rglob("*")):
        rel = path.relative_to(policies_dir).as_posix()
        if not path.is_file() or any(part.startswith(".") for part in rel.split("/")):
            continue
        if (path.suffix == ".rego" and not path.name.endswith("_test.rego")) or path.name in DATA_FILES:
            files[rel] = path.read_bytes()
    if AUTHZ_PATH in files:
        raise StackError(f"{policies_dir / AUTHZ_PATH}: that path holds the bundle's own authorization policy")
    files[AUTHZ_PATH] = AUTHZ_REGO.encode()
    return files


def revision(files: dict[str, bytes]) -> str:
    """A content hash over every file's path and bytes."""
    digest = hashlib.sha256()
    for rel in sorted(files):
        digest.update(f"{rel}\0{hashlib.sha256(files[rel]).hexdigest()}\n".encode())
    return "sha256:" + digest.hexdigest()[:16]


def policies_revision(policies_dir: Path) -> str:
    """The revision a bundle built from this folder now would have."""
    return revision(bundle_files(policies_dir))


def roots(files: dict[str, bytes]) -> list[str]:
    """The top of every package and data document: the paths the bundle owns."""
    found: set[str] = set()
    for rel, body in files.items():
        if rel.endswith(".rego"):
            match = _PACKAGE.search(body.decode())
            if match:
                parts = match.group(1).split(".")
                # data.system is OPA's own (it keeps bundle metadata there): own only the package itself.
                found.add("/".join(parts) if parts[0] == "system" else parts[0])
        elif "/" in rel:
            found.add(rel.split("/", 1)[0])
        else:
            found.update(_top_keys(rel, body))
    return sorted(found)


def _top_keys(rel: str, body: bytes) -> set[str]:
    if rel.endswith(".json"):
        doc = json.loads(body or b"{}")
    else:
        import yaml  # only for a YAML data document

        doc = yaml.safe_load(body) or {}
    return {str(k) for k in doc} if isinstance(doc, dict) else set()


def stage(policies_dir: Path, out_dir: Path) -> str:
    """Write the bundle as a folder with its ``.manifest``; return its revision."""
    files = bundle_files(policies_dir)
    rev = revision(files)
    out_dir.mkdir(parents=True, exist_ok=True)
    for child in out_dir.iterdir():  # a reused folder (a container volume) keeps nothing stale
        if child.is_dir():
            shutil.rmtree(child)
        else:
            child.unlink()
    for rel, body in files.items():
        (out_dir / rel).parent.mkdir(parents=True, exist_ok=True)
        (out_dir / rel).write_bytes(body)
    (out_dir / ".manifest").write_text(json.dumps({"revision": rev, "roots": roots(files)}))
    return rev


def build(opa: str, policies_dir: Path, out: Path) -> str:
    """``opa build`` the bundle into ``out`` (a .tar.gz); return its revision. OPA compiles it here, so
    a policy that does not compile fails now rather than when OPA starts."""
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="airlock-bundle-") as tmp:
        rev = stage(policies_dir, Path(tmp))
        result = subprocess.run([opa, "build", "--bundle", ".", "--output", str(out.resolve()), "--revision", rev],
                                cwd=tmp, capture_output=True, text=True, timeout=120)
    if result.returncode != 0:
        raise StackError(f"opa build of {policies_dir} failed:\n{result.stdout}{result.stderr}")
    return rev


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python -m engine.boundary.bundle POLICIES_DIR OUT_DIR", file=sys.stderr)
        return 2
    print(stage(Path(argv[0]), Path(argv[1])))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
