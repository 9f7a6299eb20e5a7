"""The UI's connection to Temporal, made when a request first needs it."""

from __future__ import annotations

from fastapi import FastAPI
from temporalio.client import Client

from engine.errors import StackError


async def temporal(app: FastAPI) -> Client:
    """The Temporal client, connected on first need (the UI starts even while Temporal is down).

    Raises:
        StackError: Temporal cannot be reached (HTTP 503).
    """
    if app.state.client is None:
        async with app.state.connecting:
            if app.state.client is None:
                try:
                    app.state.client = await app.state.connect()
                except Exception as exc:  # noqa: BLE001 - the SDK raises RuntimeError for an unreachable server
                    raise StackError(f"cannot reach Temporal: {exc}") from None
    return app.state.client
