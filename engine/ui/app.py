"""The web UI and JSON API: FastAPI app factory.

Pages are server-rendered (Jinja2) with plain forms; a few lines of local
JavaScript refresh the inbox. No asset comes from the network. Errors carry
their HTTP status (``AirlockError.http_status``) and are rendered here only.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.sessions import SessionMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from temporalio.client import Client

from engine.boundary.identity import Authority
from engine.boundary.inputs import MAX_DEPTH, MAX_INPUT_BYTES, text_depth, utf8_json
from engine.boundary.policy import OpaPolicy
from engine.config import Settings
from engine.errors import AirlockError, StackError
from engine.store.db import Database
from engine.ui import api, pages
from engine.ui.auth import NotSignedIn, secret_key
from engine.ui.format import register_filters
from engine.ui.services import Services, services

HERE = Path(__file__).parent
logger = logging.getLogger(__name__)
MAX_BODY_BYTES = 2 * MAX_INPUT_BYTES  # an input at its limit, with room for the rest of the body


def create_app(settings: Settings, *, db: Database,
               connect: Callable[[], Awaitable[Client]]) -> FastAPI:
    """Build the app; ``connect`` gives the Temporal client (at startup, or at first need; see ``temporal``)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        found.client, found.connecting = None, asyncio.Lock()  # this event loop's
        try:
            await found.temporal()
        except StackError as exc:  # pages that read SQL still work; decisions connect when they need to
            logger.warning("%s; connecting again when a request needs it", exc)
        yield

    app = FastAPI(title="Airlock", lifespan=lifespan, docs_url="/api/docs", redoc_url=None,
                  openapi_url="/api/openapi.json")
    templates = Jinja2Templates(directory=str(HERE / "templates"))
    register_filters(templates.env)
    found = Services(settings=settings, db=db, authority=Authority.from_settings(settings),
                     policy=OpaPolicy(settings.opa), templates=templates, connect=connect)
    app.state.services = found
    app.add_middleware(SessionMiddleware, secret_key=secret_key(settings), session_cookie="airlock_session",
                       max_age=settings.ui.session_ttl_s, same_site="strict", https_only=settings.ui.secure_cookies)

    @app.middleware("http")
    async def security_headers(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        response = await call_next(request)
        response.headers.setdefault("Content-Security-Policy",
                                    "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'")
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "same-origin")
        return response

    app.add_middleware(BoundedBody, limit=MAX_BODY_BYTES)  # added last: the outermost, before anything reads
    app.mount("/static", StaticFiles(directory=str(HERE / "static")), name="static")
    app.include_router(api.router)
    app.include_router(pages.router)

    @app.exception_handler(NotSignedIn)
    async def to_sign_in(request: Request, _exc: NotSignedIn) -> Response:
        return RedirectResponse(f"/login?next={request.url.path}", status_code=303)

    @app.exception_handler(AirlockError)
    async def airlock_error(request: Request, exc: AirlockError) -> Response:
        return _error(request, exc.http_status, str(exc))

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> Response:
        # Named by location only: echoing the input back could fail to encode (NaN) or leak it.
        problems = "; ".join(f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg')}" for e in exc.errors())
        return _error(request, 422, problems or "the request is invalid")

    @app.exception_handler(RecursionError)
    async def too_deep(request: Request, _exc: RecursionError) -> Response:
        # A body nested deeper than the JSON parser's recursion limit never reaches validation.
        return _error(request, 422, "the request body is nested too deeply")

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        return _error(request, exc.status_code, str(exc.detail), getattr(exc, "headers", None))

    return app


class BoundedBody:
    """Every request body is read here first, within limits, before anything else sees it.

    Over ``limit`` bytes is 413 (a declared ``Content-Length`` at once, a chunked body as soon as it
    passes the limit: nothing buffers more); an API body nested deeper than ``MAX_DEPTH`` is 422 before
    any JSON parser recurses into it. The body is then handed on unchanged.
    """

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length", b"0")
        if not declared.isdigit() or int(declared) > self.limit:
            await self._refuse(scope, send, 413, f"the request body is over {self.limit} bytes")
            return
        body, more = b"", True
        while more:
            message = await receive()
            if message["type"] != "http.request":  # the client left
                return
            body += message.get("body", b"")
            more = message.get("more_body", False)
            if len(body) > self.limit:
                await self._refuse(scope, send, 413, f"the request body is over {self.limit} bytes")
                return
        api_write = scope["path"].startswith("/api") and scope["method"] in ("POST", "PUT", "PATCH")
        if api_write and body and not utf8_json(body):  # else the depth below is not that of the text parsed
            await self._refuse(scope, send, 415, "the request body must be JSON in UTF-8")
            return
        if api_write and text_depth(body.decode("utf-8", errors="replace")) > MAX_DEPTH:
            await self._refuse(scope, send, 422, f"the request body is nested deeper than {MAX_DEPTH} levels")
            return
        handed = False

        async def replay() -> Message:
            nonlocal handed
            if handed:
                return await receive()  # after the body: only a disconnect can come
            handed = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)

    @staticmethod
    async def _refuse(scope: Scope, send: Send, status: int, message: str) -> None:
        if scope["path"].startswith("/api"):
            response: Response = JSONResponse({"error": message, "status": status}, status_code=status)
        else:
            response = PlainTextResponse(f"{status}: {message}", status_code=status)
        await response(scope, _nothing, send)


async def _nothing() -> Message:
    return {"type": "http.disconnect"}


def _error(request: Request, status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    if request.url.path.startswith("/api"):
        return JSONResponse({"error": message, "status": status}, status_code=status, headers=headers)
    return services(request).templates.TemplateResponse(
        request, "error.html", {"status": status, "message": message, "user": None}, status_code=status)
