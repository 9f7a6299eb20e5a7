"""What the UI's routes use, built once with the app and read through one typed accessor.

``services(request)`` (also usable as a FastAPI dependency) replaces untyped
``request.app.state`` lookups: the settings, the store, the signing authority,
the policy adapter (for labels), the templates, and the Temporal client,
connected when a request first needs it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from fastapi import Request
from fastapi.templating import Jinja2Templates
from temporalio.client import Client

from engine.boundary.identity import Authority
from engine.boundary.policy import OpaPolicy
from engine.config import Settings
from engine.errors import StackError
from engine.runtime.definitions import DefinitionRegistry
from engine.store.db import Database


@dataclass
class Services:
    """The app's collaborators (one instance per app)."""

    settings: Settings
    db: Database
    authority: Authority
    policy: OpaPolicy  # for the labels the policy data knows
    templates: Jinja2Templates
    connect: Callable[[], Awaitable[Client]]
    client: Client | None = None
    connecting: asyncio.Lock = field(default_factory=asyncio.Lock)
    _definitions: DefinitionRegistry | None = field(default=None, repr=False)

    def definitions(self) -> DefinitionRegistry:
        """The workflows this server can start (the same folder the workers serve), read once."""
        if self._definitions is None:
            assert self.settings.workflows_dir is not None  # Settings resolves it
            self._definitions = DefinitionRegistry(self.settings.workflows_dir, self.settings.project_dir)
        return self._definitions

    async def temporal(self) -> Client:
        """The Temporal client, connected on first need (the UI starts even while Temporal is down).

        Raises:
            StackError: Temporal cannot be reached (HTTP 503).
        """
        if self.client is None:
            async with self.connecting:
                if self.client is None:
                    try:
                        self.client = await self.connect()
                    except Exception as exc:  # noqa: BLE001 - the SDK raises RuntimeError for an unreachable server
                        raise StackError(f"cannot reach Temporal: {exc}") from None
        return self.client


def services(request: Request) -> Services:
    """The app's services (``Depends(services)`` in a route's signature, or called with the request)."""
    found = request.app.state.services
    assert isinstance(found, Services)
    return found
