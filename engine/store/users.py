"""Approver accounts, API tokens and the approval audit trail."""

from __future__ import annotations

import hashlib
import re
import secrets
import unicodedata
from datetime import datetime

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from pydantic import BaseModel
from sqlmodel import Session, col, select

from engine.errors import InputError
from engine.store import signin
from engine.store.tables import ApiTokenRow, ApprovalEventRow, UserRow, utcnow

_hasher = PasswordHasher()
# Verified against when the user does not exist, so timing does not reveal names.
_DUMMY_HASH = _hasher.hash("airlock-no-such-user")


_NAME = re.compile(r"^[a-z][a-z0-9._-]{0,63}$")
_TENANT = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")


class Approver(BaseModel):
    """An authenticated person, the roles they hold and the tenants they belong to."""

    name: str
    roles: list[str]
    tenants: list[str] = ["default"]


def normalise_name(name: str) -> str:
    """The canonical form of a user name: NFKC, trimmed, lower case, plain ASCII.

    Raises:
        InputError: anything else (look-alike letters, spaces, symbols), so two spellings never
            name two people.
    """
    canonical = unicodedata.normalize("NFKC", name or "").strip().lower()
    if not _NAME.fullmatch(canonical):
        raise InputError(f"user name {name!r}: use 1-64 ASCII letters, digits, '.', '_' or '-', starting with a "
                         "letter")
    return canonical


def check_tenant(tenant: str) -> str:
    """A tenant name as stored (lower case ASCII, at most 64 characters).

    Raises:
        InputError: it is not one.
    """
    if not isinstance(tenant, str) or not _TENANT.fullmatch(tenant):
        raise InputError(f"tenant {str(tenant)[:80]!r}: use 1-64 lower-case ASCII letters, digits, '.', '_' or '-'")
    return tenant


def _view(row: UserRow) -> Approver:
    return Approver(name=row.name, roles=row.roles or [], tenants=row.tenants or ["default"])


class EventView(BaseModel):
    """One audit record of a decision."""

    approval_id: str
    run_id: str
    actor: str
    action: str
    digest: str
    source: str | None
    comment: str | None
    at: datetime


def add_user(session: Session, *, name: str, password: str, roles: list[str],
             tenants: list[str] | None = None) -> Approver:
    """Create an account, or reset its password, roles and tenants (which ends its browser sessions).

    Raises:
        InputError: the name, a tenant or the password is unusable.
    """
    name = normalise_name(name)
    if len(password) < 8:
        raise InputError("password: at least 8 characters")
    existing = session.get(UserRow, name)
    row = existing or UserRow(name=name, password_hash="")
    row.password_hash, row.roles, row.disabled = _hasher.hash(password), sorted(set(roles)), False
    row.tenants = sorted({check_tenant(t) for t in tenants or ["default"]})
    session.add(row)
    session.commit()
    if existing is not None:  # whoever knew the old password signs in again
        signin.end_sessions(session, user=name)
    return _view(row)


def _row(session: Session, name: str) -> UserRow | None:
    try:
        return session.get(UserRow, normalise_name(name))
    except InputError:
        return None


def get_user(session: Session, *, name: str) -> Approver | None:
    """An enabled account (by any spelling that normalises to its name), or None."""
    row = _row(session, name)
    return _view(row) if row and not row.disabled else None


def list_users(session: Session) -> list[Approver]:
    """Every enabled account."""
    rows = session.exec(select(UserRow).where(UserRow.disabled == False).order_by(col(UserRow.name))).all()  # noqa: E712
    return [_view(r) for r in rows]


def authenticate(session: Session, *, name: str, password: str) -> Approver | None:
    """The account if the password matches, else None."""
    row = _row(session, name)
    try:
        _hasher.verify(row.password_hash if row else _DUMMY_HASH, password)
    except (VerificationError, InvalidHashError):
        return None
    if row is None or row.disabled:
        return None
    return _view(row)


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_token(session: Session, *, user: str, label: str = "") -> str:
    """A new API token for ``user``; only its hash is stored."""
    if session.get(UserRow, user) is None:
        raise InputError(f"no user {user}")
    token = "alk_" + secrets.token_urlsafe(32)
    session.add(ApiTokenRow(token_hash=_token_hash(token), user=user, label=label))
    session.commit()
    return token


def user_for_token(session: Session, *, token: str) -> Approver | None:
    """The account an API token belongs to, or None."""
    row = session.get(ApiTokenRow, _token_hash(token))
    if row is None:
        return None
    row.last_used_at = utcnow()
    session.add(row)
    session.commit()
    return get_user(session, name=row.user)


def record_event(session: Session, *, approval_id: str, run_id: str, actor: str, action: str, digest: str,
                 source: str | None, comment: str | None, at: datetime | None = None) -> None:
    """Append one decision to the audit trail (once per actor and action)."""
    exists = session.exec(select(ApprovalEventRow).where(ApprovalEventRow.approval_id == approval_id,
                                                         ApprovalEventRow.actor == actor,
                                                         ApprovalEventRow.action == action)).first()
    if exists is None:
        session.add(ApprovalEventRow(approval_id=approval_id, run_id=run_id, actor=actor, action=action,
                                     digest=digest, source=source, comment=comment, at=at or utcnow()))
        session.commit()


def events_for(session: Session, *, approval_id: str) -> list[EventView]:
    """The audit trail of one approval, oldest first."""
    rows = session.exec(select(ApprovalEventRow).where(ApprovalEventRow.approval_id == approval_id)
                        .order_by(col(ApprovalEventRow.at))).all()
    return [EventView.model_validate(r, from_attributes=True) for r in rows]


def sign_in(session: Session, *, name: str, password: str, account: str, address: str, max_failures: int,
            max_per_address: int, window_s: int) -> tuple[Approver | None, int]:
    """The account if the password is right, throttled per ``account`` at ``address`` and per ``address``.

    Returns:
        ``(account or None, 0)``, or ``(None, seconds to wait)`` while this account at this address (or
        this address) has failed too often: the password is then not even checked.
    """
    attempt, wait = signin.begin_attempt(session, user=account, address=address, max_failures=max_failures,
                                         max_per_address=max_per_address, window_s=window_s)
    if attempt is None:
        return None, wait
    user = authenticate(session, name=name, password=password)
    if user is not None:
        signin.succeeded(session, user=account, address=address)
    return user, 0
