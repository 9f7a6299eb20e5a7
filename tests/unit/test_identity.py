"""Signed assertions and user names: what the worker accepts as a person."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from engine.boundary.identity import Authority, Verifier, args_hash
from engine.config import Settings
from engine.errors import AuthenticationError, InputError
from engine.store.users import normalise_name

KEY = Ed25519PrivateKey.generate()


def test_a_decision_assertion_round_trips_with_its_bindings() -> None:
    token = Authority(KEY).decide(user="bob", run_id="r1", approval_id="apr_1", digest="sha256:d", action="edit",
                                  args={"amount": "40.00"})
    claims = Verifier(KEY.public_key()).verify(token)
    assert (claims.subject, claims.action, claims.run_id, claims.approval_id, claims.digest) == (
        "bob", "edit", "r1", "apr_1", "sha256:d")
    assert claims.args_hash == args_hash({"amount": "40.00"}) != args_hash({"amount": "40.01"})


@pytest.mark.parametrize("token, problem", [
    (Authority(KEY, ttl_s=-60).start(user="a", run_id="r", workflow="w", tenant="t"), "has expired"),
    (Authority(Ed25519PrivateKey.generate()).start(user="a", run_id="r", workflow="w", tenant="t"),
     "Signature verification failed"),
    ("", "no signed assertion"),
    ("eyJhbGciOiJub25lIn0.eyJzdWIiOiJib2IifQ.", "is not valid"),  # alg "none": never accepted
])
def test_bad_assertions_are_refused(token: str, problem: str) -> None:
    with pytest.raises(AuthenticationError, match=problem):
        Verifier(KEY.public_key()).verify(token)


def test_local_keys_are_generated_once_and_private(tmp_path: Path) -> None:
    settings = Settings(state_dir=tmp_path)
    token = Authority.from_settings(settings).start(user="a", run_id="r", workflow="w", tenant="t")
    assert Verifier.from_settings(settings).verify(token).subject == "a"  # the same pair, read back
    private = tmp_path / "keys" / "assertions.key"
    assert os.stat(private).st_mode & 0o777 == 0o600
    with pytest.raises(AuthenticationError):  # another state folder, another pair
        Verifier.from_settings(Settings(state_dir=tmp_path / "other")).verify(token)


@pytest.mark.parametrize("name, canonical", [("bob", "bob"), (" Bob ", "bob"), ("alice ", "alice"),
                                             ("ｂｏｂ", "bob")])  # full-width letters fold to ASCII (NFKC)
def test_names_normalise_to_one_spelling(name: str, canonical: str) -> None:
    assert normalise_name(name) == canonical


@pytest.mark.parametrize("name", ["bоb", "b ob", "", "-bob", "bob\u200b", "a" * 65, "bob;drop"])  # Cyrillic о
def test_look_alike_or_odd_names_are_refused(name: str) -> None:
    with pytest.raises(InputError, match="user name"):
        normalise_name(name)
