"""Who is asking: session cookie, API token, or a trusted proxy header.

Roles are read from the database on every request, so a role change applies
at once. Every state-changing form carries the session's CSRF token.
"""

from __future__ import annotations

import secrets
import time
from pathlib import Path

from fastapi import HTTPException, Request
from sqlmodel import Session

from engine.config import Settings
from engine.errors import NotFoundError
from engine.store import repo, users
from engine.store.repo import ApprovalView, RunView
from engine.store.users import Approver

SESSION_USER, SESSION_CSRF, SESSION_AT = "user", "csrf", "at"


class NotSignedIn(Exception):
    """No valid identity on a page that needs one (rendered as a redirect to sign-in)."""


def secret_key(settings: Settings) -> str:
    """The session-signing key: from settings, else generated once into the state folder."""
    if settings.ui.secret_key:
        return settings.ui.secret_key.get_secret_value()
    path = (settings.state_dir or Path(".airlock")) / "ui-secret"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch(mode=0o600)
        path.write_text(secrets.token_urlsafe(48))
    return path.read_text().strip()


def csrf_token(request: Request) -> str:
    """This session's CSRF token (created on first use)."""
    token = request.session.get(SESSION_CSRF)
    if not token:
        token = secrets.token_urlsafe(32)
        request.session[SESSION_CSRF] = token
    return token


def check_csrf(request: Request, sent: str | None) -> None:
    """Refuse a state-changing request whose CSRF token does not match the session's."""
    expected = request.session.get(SESSION_CSRF)
    if not expected or not sent or not secrets.compare_digest(expected, sent):
        raise HTTPException(status_code=403, detail="CSRF token missing or wrong; reload the page and try again")


def sign_in(request: Request, user: Approver) -> None:
    """Start a fresh session for ``user`` (new CSRF token, no fixation)."""
    request.session.clear()
    request.session.update({SESSION_USER: user.name, SESSION_AT: time.time(),
                            SESSION_CSRF: secrets.token_urlsafe(32)})


def identify(request: Request) -> Approver | None:
    """The caller, from a bearer token, the trusted header, or the session."""
    state = request.app.state
    settings: Settings = state.settings
    with Session(state.engine) as session:
        header = request.headers.get("authorization", "")
        if header.lower().startswith("bearer "):
            return users.user_for_token(session, token=header[7:].strip())
        if (name := proxied_user(request)) is not None:
            return users.get_user(session, name=name)
        name = request.session.get(SESSION_USER)
        issued = request.session.get(SESSION_AT, 0)
        if not name or time.time() - issued > settings.ui.session_ttl_s:
            request.session.clear()
            return None
        return users.get_user(session, name=name)


def page_user(request: Request) -> Approver:
    """Dependency for pages: the signed-in user, or a redirect to sign-in."""
    user = identify(request)
    if user is None:
        raise NotSignedIn()
    return user


def api_user(request: Request) -> Approver:
    """Dependency for the JSON API: the caller, or 401."""
    user = identify(request)
    if user is None:
        raise HTTPException(status_code=401, detail="sign in or send Authorization: Bearer <token>",
                            headers={"WWW-Authenticate": "Bearer"})
    return user


def proxied_user(request: Request) -> str | None:
    """The user the trusted proxy names, only when the request really comes from that proxy."""
    ui = request.app.state.settings.ui
    if not ui.trusted_header or (request.client.host if request.client else None) not in ui.trusted_proxies:
        return None
    name = request.headers.get(ui.trusted_header)
    return name.strip() if name else None


def uses_session(request: Request) -> bool:
    """Whether the caller is authenticated by cookie (and so needs CSRF on writes)."""
    return not request.headers.get("authorization") and proxied_user(request) is None


def in_tenants(user: Approver, tenant: str, what: str) -> None:
    """Refuse (as not found: another tenant's ids are not confirmed to exist) what is not in the caller's tenants."""
    if tenant not in user.tenants:
        raise NotFoundError(f"no {what}")


def own_run(session: Session, run_id: str, user: Approver) -> RunView:
    """A run of one of the user's tenants, or 404 (others' ids are not confirmed to exist)."""
    run = repo.get_run(session, run_id=run_id)
    what = f"run {run_id} (a run appears once its worker has started it)"
    if run is None:
        raise NotFoundError(f"no {what}")
    in_tenants(user, run.tenant, what)
    return run


def own_approval(request: Request, approval_id: str, user: Approver) -> ApprovalView:
    """An approval of one of the user's tenants, or 404 (others' ids are not confirmed to exist)."""
    with Session(request.app.state.engine) as session:
        item = repo.get_approval(session, approval_id=approval_id)
    if item is None:
        raise NotFoundError(f"no approval {approval_id}")
    in_tenants(user, item.tenant, f"approval {approval_id}")
    return item


def client_address(request: Request) -> str | None:
    """Where a request came from, for the audit trail."""
    return request.client.host if request.client else None
