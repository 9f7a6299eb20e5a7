"""Signed assertions: how a person's identity and decision reach a run.

A run never takes a caller's word for who started it or who approved. The
component that checks credentials (UI, JSON API, the CLI in local mode)
signs a short-lived assertion (a JWT, EdDSA over Ed25519) bound to exactly
what the person did: start run R of workflow W in tenant T, or approve /
reject / edit approval A of run R on action digest D (with that comment, from
that source, and for an edit those arguments). The worker verifies the
signature, audience and expiry with the public key, records the assertion id
so it is used once, and reads the person's roles and tenants from the user
store. A Temporal client without the private key cannot mint one.

The only importer of PyJWT.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from pydantic import BaseModel

from engine.config import Settings
from engine.errors import AuthenticationError, InputError
from engine.private import private_dir

ISSUER = "airlock"
AUDIENCE = "airlock-run"
Action = Literal["start", "approve", "reject", "edit"]
_LEEWAY_S = 5


class Assertion(BaseModel):
    """The verified claims of one assertion."""

    subject: str
    action: Action
    run_id: str
    jti: str
    expires_at: datetime
    workflow: str | None = None
    tenant: str | None = None
    approval_id: str | None = None
    digest: str | None = None
    args_hash: str | None = None
    note_hash: str | None = None
    input_hash: str | None = None
    version: int | None = None
    pin: str | None = None


def args_hash(args: dict[str, Any]) -> str:
    """What an edit assertion binds: the new arguments, canonically."""
    from engine.boundary.decision import canonical_json

    return "sha256:" + hashlib.sha256(canonical_json(args).encode()).hexdigest()


def note_hash(comment: str | None, source: str | None) -> str | None:
    """What a decision assertion binds besides the action: its comment and where it came from (None when
    neither is given). A rejection's comment goes to the model: nobody may swap it under a person's name."""
    if not comment and not source:
        return None
    return "sha256:" + hashlib.sha256(json.dumps([comment or "", source or ""]).encode()).hexdigest()


def _local_key_paths(settings: Settings) -> tuple[Path, Path]:
    keys = (settings.state_dir or Path(".airlock")) / "keys"
    return keys / "assertions.key", keys / "assertions.pub"


def local_key_files(settings: Settings) -> tuple[Path, Path]:
    """The local key pair's files (private, public), generated once; the private key is its owner's only.

    Two processes starting at once (worker, UI, CLI) agree on one pair: the
    private key is created exclusively, the public key appears by rename.
    """
    private, public = _local_key_paths(settings)
    private_dir(private.parent.parent)  # the state folder: nobody else may read what is kept there
    private_dir(private.parent)
    if not private.exists():
        key = Ed25519PrivateKey.generate()
        try:
            fd = os.open(private, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            fd = -1  # another process won: wait for its public key below
        if fd >= 0:
            with os.fdopen(fd, "wb") as handle:
                handle.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
            staging = public.with_suffix(f".{os.getpid()}.tmp")
            staging.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                              serialization.PublicFormat.SubjectPublicKeyInfo))
            staging.replace(public)
    for _ in range(50):
        if public.exists():
            break
        time.sleep(0.1)
    return private, public


def _private_key(settings: Settings) -> Ed25519PrivateKey:
    auth = settings.auth
    if auth.signing_key is not None:
        pem, where = auth.signing_key.get_secret_value().encode(), "AIRLOCK_AUTH__SIGNING_KEY"
    elif auth.signing_key_file is not None:
        if not auth.signing_key_file.is_file():
            raise InputError(f"AIRLOCK_AUTH__SIGNING_KEY_FILE: no file {auth.signing_key_file}")
        pem, where = auth.signing_key_file.read_bytes(), f"AIRLOCK_AUTH__SIGNING_KEY_FILE ({auth.signing_key_file})"
    else:
        path = local_key_files(settings)[0]
        pem, where = path.read_bytes(), str(path)
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError):  # the library's text is long and may quote the key's bytes
        raise InputError(f"{where}: the assertion signing key is not an unencrypted PEM private key") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise InputError(f"{where}: the assertion signing key must be an Ed25519 key")
    return key


def _public_key(settings: Settings) -> Ed25519PublicKey:
    auth = settings.auth
    if auth.verify_key is not None:
        pem, where = auth.verify_key.encode(), "AIRLOCK_AUTH__VERIFY_KEY"
    elif auth.verify_key_file is not None:
        if not auth.verify_key_file.is_file():
            raise InputError(f"AIRLOCK_AUTH__VERIFY_KEY_FILE: no file {auth.verify_key_file}")
        pem, where = auth.verify_key_file.read_bytes(), f"AIRLOCK_AUTH__VERIFY_KEY_FILE ({auth.verify_key_file})"
    elif auth.signing_key is not None or auth.signing_key_file is not None:
        return _private_key(settings).public_key()
    else:
        path = local_key_files(settings)[1]
        pem, where = path.read_bytes(), str(path)
    try:
        key = serialization.load_pem_public_key(pem)
    except (ValueError, TypeError):
        raise InputError(f"{where}: the assertion verify key is not a PEM public key") from None
    if not isinstance(key, Ed25519PublicKey):
        raise InputError(f"{where}: the assertion verify key must be an Ed25519 key")
    return key


class Authority:
    """Signs assertions for people whose credentials were checked (UI, API, local CLI)."""

    def __init__(self, key: Ed25519PrivateKey, ttl_s: int = 120) -> None:
        self._key, self._ttl = key, timedelta(seconds=ttl_s)

    def __repr__(self) -> str:
        return "Authority(<key>)"

    @classmethod
    def from_settings(cls, settings: Settings) -> Authority:
        return cls(_private_key(settings), settings.auth.assertion_ttl_s)

    def assertion_id(self, token: str) -> str:
        """The id (``jti``) of an assertion this authority signed, checked with its own key: what a decision
        queued for delivery is recorded under (``engine.runtime.payloads.decision_key``)."""
        return Verifier(self._key.public_key()).signed(token).jti

    def _sign(self, subject: str, action: Action, run_id: str, **claims: Any) -> str:
        now = datetime.now(UTC)
        body = {"iss": ISSUER, "aud": AUDIENCE, "sub": subject, "act": action, "run": run_id,
                "jti": uuid.uuid4().hex, "iat": now, "exp": now + self._ttl,
                **{k: v for k, v in claims.items() if v is not None}}
        return jwt.encode(body, self._key, algorithm="EdDSA")

    def start(self, *, user: str, run_id: str, workflow: str, tenant: str, run_input: dict[str, Any] | None = None,
              version: int | None = None, pin: str | None = None) -> str:
        """``user`` (authenticated) starts run ``run_id`` of ``workflow`` in ``tenant``, with exactly this
        input (and version or definition pin, when given)."""
        return self._sign(user, "start", run_id, wf=workflow, ten=tenant, inp=args_hash(run_input or {}),
                          ver=version, pin=pin)

    def decide(self, *, user: str, run_id: str, approval_id: str, digest: str, action: Action,
               args: dict[str, Any] | None = None, comment: str | None = None, source: str | None = None) -> str:
        """``user`` (authenticated) approves, rejects or edits (with ``args``) one gated action, with this
        comment, from this source."""
        return self._sign(user, action, run_id, apr=approval_id, dig=digest,
                          args=args_hash(args) if args is not None else None, note=note_hash(comment, source))


class Verifier:
    """Checks assertions in the worker: signature, issuer, audience, expiry."""

    def __init__(self, key: Ed25519PublicKey) -> None:
        self._key = key

    @classmethod
    def from_settings(cls, settings: Settings) -> Verifier:
        return cls(_public_key(settings))

    def verify(self, token: str, *, at: datetime | None = None) -> Assertion:
        """The claims of a valid assertion: :meth:`signed`, then :meth:`unexpired` at ``at`` (now when None).

        ``at`` judges expiry at that moment instead of now: when a decision was accepted for delivery
        (recorded by the door that signed it, see ``engine.store.approvals.queue_decision``), it counts
        if its assertion was still valid then. Everything else is checked as always.

        Raises:
            AuthenticationError: missing, malformed, forged, expired or not meant for a run.
        """
        return self.unexpired(self.signed(token), at=at)

    def signed(self, token: str) -> Assertion:
        """The claims of an assertion signed with this key for a run (signature, issuer, audience, the
        claims it needs), whatever its expiry: who signed exactly what. Its id (``jti``) is what a record
        of it is found by; the text is not, since one signed assertion has several spellings that verify
        (a JWT library reads the signature segment leniently). Judge expiry with :meth:`unexpired`.

        Raises:
            AuthenticationError: missing, malformed, forged or not meant for a run.
        """
        if not token:
            raise AuthenticationError("no signed assertion: the person must sign in (UI, API token, or the "
                                      "CLI with a password)")
        try:
            claims = jwt.decode(token, self._key, algorithms=["EdDSA"], audience=AUDIENCE, issuer=ISSUER,
                                leeway=_LEEWAY_S, options={"require": ["exp", "iat", "sub", "jti", "aud", "iss"],
                                                           "verify_exp": False})
        except jwt.InvalidTokenError as exc:
            raise AuthenticationError(f"the signed assertion is not valid: {exc}") from None
        if not isinstance(claims["exp"], int | float) or isinstance(claims["exp"], bool):
            raise AuthenticationError("the signed assertion is not valid: its expiry is not a time")
        try:
            return Assertion(subject=claims["sub"], action=claims["act"], run_id=claims["run"], jti=claims["jti"],
                             expires_at=datetime.fromtimestamp(claims["exp"], UTC),
                             workflow=claims.get("wf"), tenant=claims.get("ten"), approval_id=claims.get("apr"),
                             digest=claims.get("dig"), args_hash=claims.get("args"), note_hash=claims.get("note"),
                             input_hash=claims.get("inp"),
                             version=claims.get("ver"), pin=claims.get("pin"))
        except (KeyError, ValueError, OverflowError, OSError) as exc:
            raise AuthenticationError(f"the signed assertion lacks a claim: {exc}") from None

    @staticmethod
    def unexpired(claims: Assertion, *, at: datetime | None = None) -> Assertion:
        """``claims`` if their assertion was valid at ``at`` (now when None), give or take 5 s.

        Raises:
            AuthenticationError: it had expired by then.
        """
        moment = (at or datetime.now(UTC)).timestamp()
        if moment > claims.expires_at.timestamp() + _LEEWAY_S:
            if at is None:
                raise AuthenticationError("the signed assertion has expired: decide again")
            raise AuthenticationError("the signed assertion had expired when the decision was queued: decide again")
        return claims
