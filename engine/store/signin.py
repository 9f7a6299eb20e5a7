"""Browser sessions and failed sign-ins: what a copied cookie is worth, how fast passwords can be guessed.

Both live in the database, so they hold across UI processes and restarts.
A session cookie carries a random id; only its SHA-256 is stored. Every
sign-in attempt is written down as a failure *before* the password is
checked and wiped when it succeeds, so parallel guesses cannot slip past the
limit between the check and the count.
"""

from __future__ import annotations

import hashlib
import math
import secrets
from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, text
from sqlmodel import Session, col, select

from engine.store.tables import SignInFailureRow, UiSessionRow, utcnow


def _hash(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def start_session(session: Session, *, user: str, ttl_s: int) -> str:
    """A new session for ``user``: its id, for the cookie. Sessions older than ``ttl_s`` are forgotten."""
    now = utcnow()
    session.execute(delete(UiSessionRow).where(col(UiSessionRow.created_at) < now - timedelta(seconds=ttl_s)))
    session_id = secrets.token_urlsafe(32)
    session.add(UiSessionRow(session_hash=_hash(session_id), user=user, created_at=now))
    session.commit()
    return session_id


def session_user(session: Session, *, session_id: str, ttl_s: int) -> str | None:
    """Whose session this is, while it lives (not ended, younger than ``ttl_s``); else None."""
    row = session.get(UiSessionRow, _hash(session_id))
    if row is None or row.ended_at is not None:
        return None
    if (utcnow() - _aware(row.created_at)).total_seconds() > ttl_s:
        return None
    return row.user


def end_session(session: Session, *, session_id: str) -> None:
    """End one session (sign-out): the cookie, and every copy of it, stops counting."""
    row = session.get(UiSessionRow, _hash(session_id))
    if row is not None and row.ended_at is None:
        row.ended_at = utcnow()
        session.add(row)
        session.commit()


def end_sessions(session: Session, *, user: str) -> int:
    """End every live session of ``user`` (their password changed); how many there were."""
    rows = session.exec(select(UiSessionRow).where(UiSessionRow.user == user,
                                                   col(UiSessionRow.ended_at).is_(None))).all()
    now = utcnow()
    for row in rows:
        row.ended_at = now
        session.add(row)
    session.commit()
    return len(rows)


def _wait(session: Session, *, user: str, address: str, max_failures: int, max_per_address: int,
          window_s: int, now: datetime, excluding: int | None = None) -> int:
    """Seconds until one more attempt fits both limits (0: it fits now)."""
    since = now - timedelta(seconds=window_s)
    rows = session.exec(select(SignInFailureRow).where(SignInFailureRow.address == address,
                                                       col(SignInFailureRow.at) >= since)
                        .order_by(col(SignInFailureRow.at))).all()
    rows = [r for r in rows if r.failure_id != excluding]
    wait = 0.0
    for counted, limit in (([r for r in rows if r.user == user], max_failures), (rows, max_per_address)):
        if len(counted) >= limit:  # the oldest failures must age out until one more fits
            frees_at = _aware(counted[len(counted) - limit].at) + timedelta(seconds=window_s)
            wait = max(wait, (frees_at - now).total_seconds())
    return max(1, math.ceil(wait)) if wait > 0 else 0


def sign_in_wait(session: Session, *, user: str, address: str, max_failures: int, max_per_address: int,
                 window_s: int) -> int:
    """Seconds ``user`` must wait before signing in from ``address`` (0: they may try now)."""
    return _wait(session, user=user, address=address, max_failures=max_failures, max_per_address=max_per_address,
                 window_s=window_s, now=utcnow())


def begin_attempt(session: Session, *, user: str, address: str, max_failures: int, max_per_address: int,
                  window_s: int) -> tuple[int | None, int]:
    """Count a sign-in attempt as a failure until :func:`succeeded` says otherwise.

    Returns:
        ``(attempt id, 0)`` when it may check the password, or ``(None, seconds to wait)`` when
        too many failures came from this user and address, or from this address, within
        ``window_s``; a refused attempt is not counted, so waiting is enough.
    """
    # Attempts from one address are written and counted one at a time: each counts every attempt before
    # it, so the first ones within the limit go ahead and the rest wait. (Written first and counted after,
    # concurrently, a burst of attempts could each count all the others and refuse one another.)
    if session.get_bind().dialect.name == "postgresql":  # SQLite runs one writing transaction at a time
        session.execute(text("SELECT pg_advisory_xact_lock(hashtext(:key))"), {"key": f"sign-in:{address}"})
    now = utcnow()
    session.execute(delete(SignInFailureRow).where(col(SignInFailureRow.at) < now - timedelta(seconds=window_s)))
    row = SignInFailureRow(user=user, address=address, at=now)
    session.add(row)
    session.flush()
    attempt = row.failure_id
    wait = _wait(session, user=user, address=address, max_failures=max_failures, max_per_address=max_per_address,
                 window_s=window_s, now=now, excluding=attempt)
    if wait:
        session.execute(delete(SignInFailureRow).where(col(SignInFailureRow.failure_id) == attempt))
    session.commit()  # ends the turn: the next attempt from this address counts this one
    return (None, wait) if wait else (attempt, 0)


def succeeded(session: Session, *, user: str, address: str) -> None:
    """The password was right: forget the failures of ``user`` from ``address`` (the attempt among them)."""
    session.execute(delete(SignInFailureRow).where(col(SignInFailureRow.user) == user,
                                                  col(SignInFailureRow.address) == address))
    session.commit()
