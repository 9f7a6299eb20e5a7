"""Who is asking: session cookie, API token, or a trusted proxy header.

Roles are read from the database on every request, so a role change applies
at once. The session cookie carries only the id of a session held in the
database, so signing out ends it everywhere. Every state-changing form
carries the session's CSRF token, and so does every cookie-authenticated API
write: only a bearer token or the trusted proxy header stands instead.
"""

from __future__ import annotations

import secrets
from pathlib import Path

from fastapi import HTTPException, Request

from engine.config import Settings, read_secret_file
from engine.errors import InputError, NotFoundError
from engine.private import private_dir, private_file, write_private
from engine.store import repo, signin, users
from engine.store.repo import ApprovalView, RunView
from engine.store.users import Approver
from engine.ui.services import services

SESSION_ID, SESSION_CSRF = "sid", "csrf"


class NotSignedIn(Exception):
    """No valid identity on a page that needs one (rendered as a redirect to sign-in)."""


def secret_key(settings: Settings) -> str:
    """The session-signing key: from settings (the value, or a file), else generated once into the state folder.

    Raises:
        InputError: ``AIRLOCK_UI__SECRET_KEY_FILE`` cannot be read.
    """
    if settings.ui.secret_key:
        return settings.ui.secret_key.get_secret_value()
    if settings.ui.secret_key_file is not None:
        try:
            return read_secret_file(settings.ui.secret_key_file, "AIRLOCK_UI__SECRET_KEY_FILE")
        except ValueError as exc:
            raise InputError(str(exc)) from None
    path = private_dir(settings.state_dir or Path(".airlock")) / "ui-secret"
    if not private_file(path).read_text().strip():  # new (created 0600), or an older one tightened
        write_private(path, secrets.token_urlsafe(48))
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


def _account(name: str) -> str:
    """Whom a sign-in attempt is counted against: the canonical name, or what was typed (unknown names count too)."""
    try:
        return users.normalise_name(name)
    except InputError:
        return name.strip().lower()[:64]


def check_password(request: Request, name: str, password: str) -> tuple[Approver | None, int]:
    """The account if the password is right, throttled per user and address and per address.

    Returns:
        ``(account or None, 0)``, or ``(None, seconds to wait)`` while this user at this address (or
        this address) has failed too often: the password is then not even checked.
    """
    ui = services(request).settings.ui
    account, address = _account(name), client_address(request) or "unknown"
    return services(request).db.call(users.sign_in, name=name, password=password, account=account, address=address,
                                     max_failures=ui.sign_in_max_failures,
                                     max_per_address=ui.sign_in_max_failures_per_address,
                                     window_s=ui.sign_in_window_s)


def sign_in(request: Request, user: Approver) -> None:
    """Start a fresh session for ``user`` (new id and CSRF token: no fixation)."""
    request.session.clear()
    session_id = services(request).db.call(signin.start_session, user=user.name,
                                           ttl_s=services(request).settings.ui.session_ttl_s)
    request.session.update({SESSION_ID: session_id, SESSION_CSRF: secrets.token_urlsafe(32)})


def sign_out(request: Request) -> None:
    """End this session on the server, so a copy of the cookie is worth nothing either."""
    if session_id := request.session.get(SESSION_ID):
        services(request).db.call(signin.end_session, session_id=str(session_id))
    request.session.clear()


def _bearer(request: Request) -> str | None:
    """The token of an ``Authorization: Bearer`` header (maybe empty), or None for any other header or none."""
    scheme, _, token = request.headers.get("authorization", "").strip().partition(" ")
    return token.strip() if scheme.lower() == "bearer" else None


def identify(request: Request) -> Approver | None:
    """The caller, from a bearer token, the trusted header, or the session.

    A bearer token that is wrong names nobody: it never falls back to the cookie.
    """
    state = services(request)
    settings: Settings = state.settings
    db = state.db
    if (token := _bearer(request)) is not None:
        return db.call(users.user_for_token, token=token) if token else None
    if (name := proxied_user(request)) is not None:
        return db.call(users.get_user, name=name)
    session_id = request.session.get(SESSION_ID)
    name = session_id and db.call(signin.session_user, session_id=str(session_id), ttl_s=settings.ui.session_ttl_s)
    if not name:
        request.session.clear()
        return None
    return db.call(users.get_user, name=name)


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
    ui = services(request).settings.ui
    if not ui.trusted_header or (request.client.host if request.client else None) not in ui.trusted_proxies:
        return None
    name = request.headers.get(ui.trusted_header)
    return name.strip() if name else None


def uses_session(request: Request) -> bool:
    """Whether the caller is authenticated by cookie (and so needs CSRF on writes).

    Only what :func:`identify` takes instead of the cookie exempts: a bearer token or the
    trusted header. Any other ``Authorization`` header (Basic, garbage) leaves the cookie in charge.
    """
    return _bearer(request) is None and proxied_user(request) is None


def in_tenants(user: Approver, tenant: str, what: str) -> None:
    """Refuse (as not found: another tenant's ids are not confirmed to exist) what is not in the caller's tenants."""
    if tenant not in user.tenants:
        raise NotFoundError(f"no {what}")


def own_run(request: Request, run_id: str, user: Approver) -> RunView:
    """A run of one of the user's tenants, or 404 (others' ids are not confirmed to exist)."""
    run = services(request).db.call(repo.get_run, run_id=run_id)
    what = f"run {run_id} (a run appears once its worker has started it)"
    if run is None:
        raise NotFoundError(f"no {what}")
    in_tenants(user, run.tenant, what)
    return run


def own_approval(request: Request, approval_id: str, user: Approver) -> ApprovalView:
    """An approval of one of the user's tenants, or 404 (others' ids are not confirmed to exist)."""
    item = services(request).db.call(repo.get_approval, approval_id=approval_id)
    if item is None:
        raise NotFoundError(f"no approval {approval_id}")
    in_tenants(user, item.tenant, f"approval {approval_id}")
    return item


def client_address(request: Request) -> str | None:
    """Where a request came from, for the audit trail and sign-in throttling.

    The peer's address; with ``ui.forwarded_for`` on and the peer one of ``ui.trusted_proxies``, the
    address the proxy saw (the last entry of ``X-Forwarded-For``, the one that proxy added). Any other
    client's ``X-Forwarded-For`` is ignored: it would let one person pose as many addresses.
    """
    peer = request.client.host if request.client else None
    ui = services(request).settings.ui
    forwarded = request.headers.get("x-forwarded-for")
    if ui.forwarded_for and forwarded and peer in ui.trusted_proxies:
        return forwarded.split(",")[-1].strip()[:100] or peer
    return peer
